"""The values of live mode's configuration: one parser per kind (durations, sizes, URLs, ...), shared
by the file, the environment and the flags, and the error that lists every problem at once."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from exporter.model.histogram_profiles import PROFILES

ENV_PREFIX = "LIBP2P_EXPORTER_"
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {"node", "instance", "job"}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


class ConfigError(Exception):
    """One or more problems, each a line naming where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> float:
    """Seconds from ``1.5`` (seconds), ``500ms``, ``2s``, ``5m`` or ``1h``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 1s, 500ms or 5m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration (use 500ms, 1s, 5m, 1h or a number of seconds)")
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from ``1048576``, ``64MiB``, ``10MB``..."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 64MiB")
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a size (use bytes or 512KiB, 64MiB, 1GB)")
        size = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])
    if size <= 0:
        raise ValueError("must be positive")
    return size


def parse_profile(value: Any) -> str:
    """A histogram profile name (``--histograms.profile``)."""
    if value not in PROFILES:
        raise ValueError(f"{value!r} is not a histogram profile (one of {', '.join(PROFILES)})")
    return str(value)


def check_url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise ValueError("expected a ws:// or wss:// URL")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL with a host")
    return url


def parse_target_arg(text: str) -> tuple[str, str]:
    """``ws://…`` or ``NAME=ws://…`` (from a flag or the environment)."""
    name, sep, url = text.partition("=")
    if sep and "://" not in name:
        return name.strip(), url.strip()
    return "", text.strip()


def parse_int(value: Any) -> int:
    """A whole number from ``3`` or ``"3"``; anything else is one clear line, not Python's ``int()`` text."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"expected a whole number, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a whole number, not {value!r}") from None
