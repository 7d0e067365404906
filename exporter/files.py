"""New files for recordings and journals: ``<name>-<UTC time>-<seq><suffix>``, never overwriting one.

An exporter restarted within the same second, two replicas sharing a directory, or two targets whose
names sanitise alike would otherwise reuse a name; the sequence number moves on until a name is free.
A leaf every layer may use, like ``logs``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def open_new(directory: Path, name: str, suffix: str, seq: int, opener: Callable[[Path], T]) -> tuple[Path, T, int]:
    """``opener(path)`` on the first free name after ``seq``; it must raise FileExistsError for a taken
    one (open mode ``x``). Returns the path, what ``opener`` returned, and the sequence number used."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    while True:
        seq += 1
        path = directory / f"{name}-{stamp}-{seq:04d}{suffix}"
        try:
            return path, opener(path), seq
        except FileExistsError:
            continue
