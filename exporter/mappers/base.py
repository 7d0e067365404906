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

    __slots__ = ("_round", "last", "totals")

    def __init__(self) -> None:
        self.last: dict[Hashable, int] = {}
        self.totals: defaultdict[tuple[str, ...], int] = defaultdict(int)
        self._round: dict[Hashable, int] | None = None

    def add(self, source: Hashable, labels: tuple[str, ...], value: int) -> None:
        prev = self.last.get(source, 0)
        self.totals[labels] += value - prev if value >= prev else value
        if self._round is not None:
            self._round[source] = value
        else:
            self.last[source] = value

    def begin(self) -> None:
        """Start a round: sources not reported before ``end()`` are forgotten (they left)."""
        self._round = {}

    def end(self) -> None:
        if self._round is not None:
            self.last, self._round = self._round, None
