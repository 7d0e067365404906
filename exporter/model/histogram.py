"""Fixed-bucket histograms accumulated by the exporter (cumulative ones, and point-in-time ones)."""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterable, Sequence
from functools import reduce

from exporter.model.native import NativeBuckets, NativeSpec


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    return tuple(start * factor**i for i in range(count))


# go-libp2p swarm layouts, so its dashboards' bucket queries work unchanged.
CONNECTION_DURATION_BUCKETS = exponential_buckets(1.0 / 16, 2, 25)
HANDSHAKE_LATENCY_BUCKETS = exponential_buckets(0.001, 1.3, 35)
STREAM_DURATION_BUCKETS = exponential_buckets(1.0 / 16, 2, 20)
LATENCY_BUCKETS = exponential_buckets(0.0005, 2, 14)
AGE_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 3 * 3600.0, 12 * 3600.0, 86400.0, 7 * 86400.0)
QUERY_DURATION_BUCKETS = exponential_buckets(0.005, 2, 14)


class Histogram:
    """Classic buckets (``bounds``, with +Inf), and native ones alongside when a ``NativeSpec`` is given
    (``native``: see ``exporter.model.native``). ``exemplar``, when a mapper set one for this render, is
    (value, trace id, Unix time) of an observation whose span was exported."""

    __slots__ = ("bounds", "count", "counts", "exemplar", "native", "total")

    def __init__(self, bounds: Sequence[float], native: NativeSpec | None = None) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0
        self.native: NativeBuckets | None = native.new() if native is not None else None
        self.exemplar: tuple[float, str, float] | None = None

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1
        if self.native is not None:
            self.native.observe(value)

    def observe_all(self, values: Iterable[float]) -> Histogram:
        for value in values:
            self.observe(value)
        return self

    def observe_many(self, values: Sequence[float]) -> Histogram:
        """``observe`` each value, in one pass per bound (the same counts, sum and count)."""
        if values:
            ordered = sorted(values)
            at = 0
            counts = self.counts
            for i, bound in enumerate(self.bounds):
                upto = bisect.bisect_right(ordered, bound, at)  # bisect_left in observe: value <= bound
                counts[i] += upto - at
                at = upto
            counts[-1] += len(ordered) - at
            # Added in the given order from 0.0, as observe does (sum() may compensate on newer Pythons).
            self.total = reduce(operator.add, values, self.total)
            self.count += len(values)
            if self.native is not None:
                self.native.observe_sorted(ordered)
        return self

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs including +Inf, as the exposition wants them."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts):
            running += n
            out.append((_fmt(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


def _fmt(bound: float) -> str:
    return repr(float(bound))
