"""The series budget: a wrapper around any ``Writer`` that bounds one node's series.

Labels are capped one by one (``model/labels.py``), but they multiply: dir x transport x security x
muxer x ip_version over a 28-sample histogram gave one hostile node 237,215 series. So every node
has a budget, in series, per family and in total. A label combination that would pass either is
folded into the family's all-``other`` combination: counters and gauges are summed into it and
histograms merged, so totals stay right and only the breakdown is lost. The folded combinations are
reported per node in ``libp2p_exporter_series_folded``.

A node's samples are held until ``close()``, because a folded combination must be summed into its
``other`` combination before either is written. Held cheaply: while nothing is folded or written
twice (every node within its budget) the writes are kept as they came and passed on unchanged;
only the first fold (or repeated combination) turns them into per-combination entries to merge.
Samples reach the wrapped writer in the order first written, family by family, then the fold count.
"""

from __future__ import annotations

from exporter.defaults import SERIES_PER_FAMILY, SERIES_PER_NODE
from exporter.model.catalogue import Family, Labels, Writer
from exporter.model.histogram import Histogram
from exporter.model.labels import OTHER

FOLDED = Family(
    "libp2p_exporter_series_folded",
    "gauge",
    "Label combinations folded into an all-'other' combination at the last scrape, because the "
    "node's series budget (per family or in total) was reached.",
)

_GAUGE, _COUNTER, _HISTOGRAM = 0, 1, 2
_Key = tuple[tuple[str, str], ...]
_Record = tuple[int, Family, "float | Histogram", "Labels | None"]


class _Seen:
    """One family's combinations and series so far, while nothing is folded."""

    __slots__ = ("keys", "used")

    def __init__(self) -> None:
        self.keys: set[_Key] = set()
        self.used = 0


class _Entry:
    """One label combination of one family: its value (a float or a Histogram)."""

    __slots__ = ("labels", "owned", "value")

    def __init__(self, labels: Labels, value: float | Histogram) -> None:
        self.labels = labels
        self.value = value
        self.owned = False  # the Histogram is our copy (merged into), not the mapper's

    def add(self, value: float | Histogram) -> None:
        if isinstance(value, Histogram):
            assert isinstance(self.value, Histogram)
            if not self.owned:
                self.value, self.owned = _copy(self.value), True
            _merge(self.value, value)
        else:
            assert not isinstance(self.value, Histogram)
            self.value += value


class Budget(Writer):
    """One node's samples, within its series budget, written through ``out`` at ``close()``."""

    __slots__ = (
        "_entries",
        "_folded_by",
        "_kinds",
        "_records",
        "_seen",
        "_total",
        "_used",
        "folded",
        "out",
        "series_per_family",
        "series_per_node",
    )

    def __init__(
        self, out: Writer, series_per_family: int = SERIES_PER_FAMILY, series_per_node: int = SERIES_PER_NODE
    ) -> None:
        self.out = out
        self.series_per_family = series_per_family
        self.series_per_node = series_per_node
        self._total = 0
        self._used: dict[Family, int] = {}
        # While nothing is folded: the writes as they came, and each family's combinations seen.
        self._records: list[_Record] | None = []
        self._seen: dict[Family, _Seen] = {}
        # After the first fold: family -> its combinations in the order first written.
        self._entries: dict[Family, dict[_Key, _Entry]] = {}
        self._kinds: dict[Family, int] = {}
        self._folded_by: dict[Family, int] = {}
        self.folded = 0  # label combinations folded into 'other'

    # -- the Writer interface ------------------------------------------------------------------
    # The fast path (nothing folded yet) is written out in each method: it runs for every sample of
    # every changed node. A combination passes when it is new in its family and, if labelled, its
    # family keeps room for one more combination besides its 'other' one and the node has room.

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        records = self._records
        if records is not None:
            state = self._seen.get(family)
            if state is None:
                state = self._seen[family] = _Seen()
            key = tuple(labels.items()) if labels else ()
            keys = state.keys
            if key not in keys and (
                not labels or (state.used + 2 <= self.series_per_family and self._total < self.series_per_node)
            ):
                keys.add(key)
                state.used += 1
                self._total += 1
                records.append((_GAUGE, family, value, labels))
                return
            self._to_entries()
        self._fold_put(_GAUGE, family, float(value), labels)

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        records = self._records
        if records is not None:
            state = self._seen.get(family)
            if state is None:
                state = self._seen[family] = _Seen()
            key = tuple(labels.items()) if labels else ()
            keys = state.keys
            if key not in keys and (
                not labels or (state.used + 2 <= self.series_per_family and self._total < self.series_per_node)
            ):
                keys.add(key)
                state.used += 1
                self._total += 1
                records.append((_COUNTER, family, value, labels))
                return
            self._to_entries()
        self._fold_put(_COUNTER, family, float(value), labels)

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        records = self._records
        if records is not None:
            state = self._seen.get(family)
            if state is None:
                state = self._seen[family] = _Seen()
            key = tuple(labels.items()) if labels else ()
            cost = len(hist.bounds) + 3
            keys = state.keys
            if key not in keys and (
                not labels
                or (state.used + 2 * cost <= self.series_per_family and self._total + cost <= self.series_per_node)
            ):
                keys.add(key)
                state.used += cost
                self._total += cost
                records.append((_HISTOGRAM, family, hist, labels))
                return
            self._to_entries()
        self._fold_put(_HISTOGRAM, family, hist, labels)

    # -- holding -------------------------------------------------------------------------------

    def _put(self, kind: int, family: Family, value: float | Histogram, labels: Labels | None) -> None:
        if kind == _HISTOGRAM:
            self.histogram(family, value, labels)  # type: ignore[arg-type]
        elif kind == _COUNTER:
            self.counter(family, value, labels)  # type: ignore[arg-type]
        else:
            self.gauge(family, value, labels)  # type: ignore[arg-type]

    def _to_entries(self) -> None:
        """From plain records to per-combination entries (the same decisions: nothing was folded)."""
        records, self._records = self._records or [], None
        self._used = {family: state.used for family, state in self._seen.items()}
        self._seen.clear()
        for kind, family, value, labels in records:
            self._kinds.setdefault(family, kind)
            entries = self._entries.setdefault(family, {})
            held = value if isinstance(value, Histogram) else float(value)
            entries[tuple(labels.items()) if labels else ()] = _Entry(labels or {}, held)

    def _fold_put(self, kind: int, family: Family, value: float | Histogram, labels: Labels | None) -> None:
        self._kinds.setdefault(family, kind)
        entries = self._entries.setdefault(family, {})
        labels = labels or {}
        key: _Key = tuple(labels.items())
        entry = entries.get(key)
        if entry is not None:
            entry.add(value)
            return
        cost = _cost(value)
        used = self._used.get(family, 0)
        # One combination's worth is kept back in each family for its 'other' combination.
        if labels and (used + 2 * cost > self.series_per_family or self._total + cost > self.series_per_node):
            self._count_fold(family)
            labels = {k: OTHER for k in labels}
            key = tuple(labels.items())
            entry = entries.get(key)
            if entry is not None:
                entry.add(value)
                return
        entries[key] = _Entry(labels, value)
        self._used[family] = used + cost
        self._total += cost

    def _count_fold(self, family: Family) -> None:
        self.folded += 1
        self._folded_by[family] = self._folded_by.get(family, 0) + 1

    # -- a mapper that failed ------------------------------------------------------------------

    def mark(self) -> tuple[int, int]:
        """Where the samples stand now, for ``discard``."""
        if self._records is not None:
            return len(self._records), len(self._seen)
        return -1, len(self._used)

    def discard(self, mark: tuple[int, int]) -> None:
        """Drop what was written since ``mark``: the families first written after it (a family is
        written by one mapper only)."""
        at, families = mark
        if self._records is not None and at >= 0:
            kept = self._records[:at]
            self._records = []
            self._seen.clear()
            self._used.clear()
            self._total = 0
            for kind, family, value, labels in kept:
                self._put(kind, family, value, labels)
            return
        for family in list(self._used)[families:]:
            self._total -= self._used.pop(family)
            self._entries.pop(family, None)
            self._kinds.pop(family, None)
            self.folded -= self._folded_by.pop(family, 0)

    # -- writing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Write the held samples through ``out``, within the budget; then the fold count."""
        records = self._records
        if records is not None and self._total <= self.series_per_node:
            out = self.out
            for kind, family, value, labels in records:
                if kind == _HISTOGRAM:
                    out.histogram(family, value, labels)  # type: ignore[arg-type]
                elif kind == _COUNTER:
                    out.counter(family, value, labels)  # type: ignore[arg-type]
                else:
                    out.gauge(family, value, labels)  # type: ignore[arg-type]
            records.clear()
            return
        if records is not None:
            self._to_entries()
        self._trim()
        out = self.out
        for family, entries in self._entries.items():
            kind = self._kinds[family]
            for entry in entries.values():
                value = entry.value
                if isinstance(value, Histogram):
                    out.histogram(family, value, entry.labels)
                elif kind == _COUNTER:
                    out.counter(family, value, entry.labels)
                else:
                    out.gauge(family, value, entry.labels)
        self._entries.clear()
        if self.folded:
            out.gauge(FOLDED, float(self.folded))

    def _trim(self) -> None:
        """Fold the newest combinations of the largest families until the node is within its budget.

        Combinations are checked against the node-wide budget as they arrive, but what no check can
        refuse comes on top: each family's 'other' combination, unlabelled samples and the fold count
        itself. Folding more here, at the end, makes the node-wide budget a hard bound (as long as
        the budget holds one 'other' combination per family and the unlabelled samples).
        """
        budget = self.series_per_node
        if self._total + (1 if self.folded else 0) <= budget:
            return
        excess = self._total + 1 - budget  # + the fold count, written once anything is folded
        for family in sorted(self._entries, key=lambda f: self._used.get(f, 0), reverse=True):
            entries = self._entries[family]
            for key in [k for k in reversed(entries) if k and any(v != OTHER for _, v in k)]:
                if excess <= 0:
                    return
                entry = entries.pop(key)
                other: _Key = tuple((k, OTHER) for k, _ in key)
                target = entries.get(other)
                self._count_fold(family)
                if target is None:  # the family's first fold becomes its 'other' combination: no saving
                    moved = _Entry(dict(other), entry.value)
                    moved.owned = entry.owned
                    entries[other] = moved
                    continue
                target.add(entry.value)
                cost = _cost(entry.value)
                self._used[family] -= cost
                self._total -= cost
                excess -= cost


def _cost(value: float | Histogram) -> int:
    """Series one combination writes: a histogram's buckets (with +Inf), count and sum; else one."""
    return len(value.bounds) + 3 if isinstance(value, Histogram) else 1


def _copy(hist: Histogram) -> Histogram:
    out = Histogram(hist.bounds)
    out.counts = list(hist.counts)
    out.total, out.count = hist.total, hist.count
    return out


def _merge(into: Histogram, other: Histogram) -> None:
    if into.bounds != other.bounds:  # never within one family; keep the totals right anyway
        into.counts[-1] += other.count
    else:
        into.counts = [a + b for a, b in zip(into.counts, other.counts)]
    into.total += other.total
    into.count += other.count
