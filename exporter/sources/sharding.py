"""Which targets one replica watches when a fleet is split across ``--total-shards`` replicas.

A target belongs to one shard by a stable hash of its name (jump consistent hashing: Lamping and
Veach, 2014), so every replica agrees without talking to the others, and going from N to N+1 shards
moves only about 1/(N+1) of the targets (those that move all go to the new shard). The shard can be
given as a number or as a StatefulSet pod name (``libp2p-exporter-2``), whose ordinal is the shard.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

_ORDINAL = re.compile(r"^[^-].*-(\d+)$")  # a pod name: NAME-N
_LCG = 2862933555777941757  # the 64-bit linear congruential step the algorithm uses
_MASK = (1 << 64) - 1


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


def _key(name: str) -> int:
    """64 bits of the name's SHA-256: stable across processes and Python versions (unlike hash())."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:8], "big")


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in ``range(buckets)`` for a 64-bit ``key``; stable as ``buckets`` grows."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _LCG + 1) & _MASK
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def parse_shard(value: object) -> int:
    """A shard number from ``2`` or a StatefulSet pod name such as ``libp2p-exporter-2``."""
    if isinstance(value, bool):
        raise ValueError("expected a shard number or a pod name ending in -N")
    if isinstance(value, int):
        shard = value
    elif re.fullmatch(r"\s*-?\d+\s*", str(value)):
        shard = int(str(value))
    else:
        m = _ORDINAL.match(str(value).strip())
        if not m:
            raise ValueError(f"{value!r} is neither a shard number nor a pod name ending in -N")
        shard = int(m.group(1))
    if shard < 0:
        raise ValueError("must not be negative")
    return shard


@dataclass(frozen=True)
class Shard:
    """This replica's part of the fleet: shard ``index`` of ``total``."""

    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError(f"total shards must be at least 1, not {self.total}")
        if not 0 <= self.index < self.total:
            raise ValueError(f"shard {self.index} is out of range for {self.total} total shard(s) (0-{self.total - 1})")

    @property
    def sharded(self) -> bool:
        return self.total > 1

    def of(self, name: str) -> int:
        """The shard that owns the target named ``name``."""
        return jump_hash(_key(name), self.total) if self.total > 1 else 0

    def owns(self, name: str) -> bool:
        return self.of(name) == self.index

    def select(self, items: Iterable[T]) -> list[T]:
        """The items (targets) this shard owns, each identified by its ``name``."""
        return [item for item in items if self.owns(item.name)]

    def __str__(self) -> str:
        return f"shard {self.index} of {self.total}"
