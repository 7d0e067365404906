"""Helpers the metric mappers share."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable


class Monotonic:
    """Turns cumulative values reported per source into counters that never go down.

    Each source (a stream, a connection, the node) reports a running total; its increase since the
    last report is added to a labelled total. A value that goes down means the source restarted,
    so the whole new value counts as increase. A new source counts in full.
    """

    __slots__ = ("last", "totals")

    def __init__(self) -> None:
        self.last: dict[Hashable, int] = {}
        self.totals: defaultdict[tuple[str, ...], int] = defaultdict(int)

    def add(self, source: Hashable, labels: tuple[str, ...], value: int) -> None:
        prev = self.last.get(source, 0)
        self.totals[labels] += value - prev if value >= prev else value
        self.last[source] = value
