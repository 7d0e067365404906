"""Native (exponential, sparse) histogram buckets, as Prometheus' native histograms define them.

Schema ``s`` (-4 … 8) divides each power of two into ``2**s`` buckets: bucket ``i`` holds the values
in ``(base**(i-1), base**i]`` with ``base = 2 ** (2 ** -s)``, so 1 is always a boundary and ``i`` is
``ceil(log2(v) * 2**s)``. Values whose magnitude is at most the zero threshold go to the zero bucket;
negative values to the mirrored negative buckets. Only populated buckets are kept (a dict by index).

A series' bucket count is bounded: past ``max_buckets`` populated buckets the histogram halves its
resolution (schema − 1, each pair of neighbouring buckets merged: index ``i`` becomes
``ceil(i / 2)``) until it fits, as Prometheus' own clients do. Counts stay exact; only the width of
the buckets grows. Two histograms are merged at the coarser schema of the two.

The exposition encodes the buckets as spans (runs of consecutive indexes, each with the gap from
the previous run) and deltas (each bucket's count minus the previous bucket's), see ``spans``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from exporter.settings import NativeHistograms

MIN_SCHEMA = -4
MAX_SCHEMA = 8
_DEFAULTS = NativeHistograms()  # the settings state the defaults; here they are only read
DEFAULT_SCHEMA = _DEFAULTS.schema
DEFAULT_ZERO_THRESHOLD = _DEFAULTS.zero_threshold
DEFAULT_MAX_BUCKETS = _DEFAULTS.max_buckets


@dataclass(frozen=True, slots=True)
class NativeSpec:
    """How native buckets are kept: the starting schema, the zero bucket's half-width, the bucket limit,
    and whether the protobuf exposition carries the classic buckets too (``classic``)."""

    schema: int = DEFAULT_SCHEMA
    zero_threshold: float = DEFAULT_ZERO_THRESHOLD
    max_buckets: int = DEFAULT_MAX_BUCKETS
    classic: bool = False

    def __post_init__(self) -> None:
        if not MIN_SCHEMA <= self.schema <= MAX_SCHEMA:
            raise ValueError(
                f"native histogram schema must be between {MIN_SCHEMA} and {MAX_SCHEMA}, not {self.schema}"
            )
        if not (math.isfinite(self.zero_threshold) and self.zero_threshold >= 0):
            raise ValueError(f"zero threshold must be finite and not negative, not {self.zero_threshold!r}")
        if self.max_buckets < 1:
            raise ValueError(f"the bucket limit must be at least 1, not {self.max_buckets}")

    def new(self) -> NativeBuckets:
        return NativeBuckets(self)

    @classmethod
    def of(cls, settings: NativeHistograms) -> NativeSpec | None:
        """The spec the settings ask for, or None when native histograms are off."""
        if not settings.enabled:
            return None
        return cls(settings.schema, settings.zero_threshold, settings.max_buckets, settings.classic)


# Per positive schema, the upper bounds of its buckets within [0.5, 1]: 2 ** (m / 2**s - 1).
_BOUNDS = {s: tuple(2.0 ** (m / 2**s - 1) for m in range(2**s + 1)) for s in range(1, MAX_SCHEMA + 1)}


def bucket_index(value: float, schema: int) -> int:
    """The index of the bucket holding ``value`` (> 0, finite) at ``schema``: ceil(log2(value) * 2**schema),
    exact at the bucket boundaries (powers of two by frexp, the others by a table of boundaries)."""
    frac, exp = math.frexp(value)  # value = frac * 2**exp, 0.5 <= frac < 1
    if schema > 0:
        return (exp - 1) * (1 << schema) + bisect.bisect_left(_BOUNDS[schema], frac)
    index = exp - 1 if frac == 0.5 else exp  # ceil(log2(value)) at schema 0
    if schema < 0:
        index = (index + (1 << -schema) - 1) >> -schema  # ceil(index / 2**-schema)
    return index


def bucket_bounds(index: int, schema: int) -> tuple[float, float]:
    """The (lower, upper] boundaries of bucket ``index`` at ``schema``."""
    base = 2.0 ** (2.0**-schema)
    return base ** (index - 1), base**index


def _halve(buckets: dict[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for index, n in buckets.items():
        key = (index + 1) >> 1  # ceil(index / 2), for negative indexes too
        out[key] = out.get(key, 0) + n
    return out


class NativeBuckets:
    """The native part of one histogram series: schema, zero bucket, sparse positive/negative buckets."""

    __slots__ = ("classic", "limit", "negative", "positive", "schema", "zero_count", "zero_threshold")

    def __init__(self, spec: NativeSpec) -> None:
        self.classic = spec.classic
        self.schema = spec.schema
        self.zero_threshold = spec.zero_threshold
        self.limit = spec.max_buckets
        self.zero_count = 0
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return  # the classic part counts it in +Inf; a native bucket for it does not exist
        magnitude = abs(value)
        if magnitude <= self.zero_threshold:
            self.zero_count += 1
            return
        side = self.positive if value > 0 else self.negative
        index = bucket_index(magnitude, self.schema)
        side[index] = side.get(index, 0) + 1
        if len(self.positive) + len(self.negative) > self.limit:
            self._fit()

    def observe_sorted(self, ordered: list[float]) -> None:
        """``observe`` each of these ascending values, one step per populated bucket rather than per
        value (the point-in-time histograms observe every open connection at each render)."""
        at, n = 0, len(ordered)
        while at < n and not ordered[at] > -self.zero_threshold:
            self.observe(ordered[at])  # negative values: rare, one by one
            at += 1
        end = bisect.bisect_right(ordered, self.zero_threshold, at)
        self.zero_count += end - at
        at = end
        while at < n:
            value = ordered[at]
            if not math.isfinite(value):
                break
            schema = self.schema
            index = bucket_index(value, schema)
            end = bisect.bisect_right(ordered, bucket_bounds(index, schema)[1], at)
            # The float bound may sit an ulp off the exact boundary: settle by the index itself.
            while end > at + 1 and bucket_index(ordered[end - 1], schema) > index:
                end -= 1
            while end < n and math.isfinite(ordered[end]) and bucket_index(ordered[end], schema) == index:
                end += 1
            self.positive[index] = self.positive.get(index, 0) + end - at
            at = end
            if len(self.positive) + len(self.negative) > self.limit:
                self._fit()

    def buckets(self) -> int:
        return len(self.positive) + len(self.negative)

    def _fit(self) -> None:
        """Halve the resolution until the populated buckets are within the limit (not below schema -4)."""
        while self.buckets() > self.limit and self.schema > MIN_SCHEMA:
            self.positive = _halve(self.positive)
            self.negative = _halve(self.negative)
            self.schema -= 1

    def _reduce_to(self, schema: int) -> None:
        while self.schema > schema:
            self.positive = _halve(self.positive)
            self.negative = _halve(self.negative)
            self.schema -= 1

    def merge(self, other: NativeBuckets) -> None:
        """Add ``other``'s counts (at the coarser of the two schemas and the wider zero bucket)."""
        theirs = other.copy()
        schema = min(self.schema, theirs.schema)
        self._reduce_to(schema)
        theirs._reduce_to(schema)
        if theirs.zero_threshold > self.zero_threshold:
            self._widen_zero(theirs.zero_threshold)
        elif self.zero_threshold > theirs.zero_threshold:
            theirs._widen_zero(self.zero_threshold)
        self.zero_count += theirs.zero_count
        for mine, add in ((self.positive, theirs.positive), (self.negative, theirs.negative)):
            for index, n in add.items():
                mine[index] = mine.get(index, 0) + n
        self._fit()

    def _widen_zero(self, threshold: float) -> None:
        """Move every bucket lying wholly within ``threshold`` into the zero bucket."""
        self.zero_threshold = threshold
        for side in (self.positive, self.negative):
            for index in [i for i in side if bucket_bounds(i, self.schema)[1] <= threshold]:
                self.zero_count += side.pop(index)

    def copy(self) -> NativeBuckets:
        out = NativeBuckets.__new__(NativeBuckets)
        out.schema, out.zero_threshold, out.limit, out.classic = (
            self.schema,
            self.zero_threshold,
            self.limit,
            self.classic,
        )
        out.zero_count = self.zero_count
        out.positive = dict(self.positive)
        out.negative = dict(self.negative)
        return out


def spans(buckets: dict[int, int]) -> tuple[list[tuple[int, int]], list[int]]:
    """The exposition's encoding of sparse buckets: spans ``(offset, length)`` (the first offset is the
    first index, each later one the gap since the previous span's end) and count deltas (each
    bucket's count minus the previous one's, the first against 0)."""
    out_spans: list[tuple[int, int]] = []
    deltas: list[int] = []
    previous_count = 0
    next_index: int | None = None  # the index right after the current span
    for index in sorted(buckets):
        count = buckets[index]
        if next_index is not None and index == next_index:
            offset, length = out_spans[-1]
            out_spans[-1] = (offset, length + 1)
        else:
            out_spans.append((index if next_index is None else index - next_index, 1))
        next_index = index + 1
        deltas.append(count - previous_count)
        previous_count = count
    return out_spans, deltas
