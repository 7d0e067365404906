"""The series budget: a wrapper around any ``Writer`` that bounds one node's series.

Labels are capped one by one (``model/labels.py``), but they multiply: dir x transport x security x
muxer x ip_version over a 28-sample histogram gave one hostile node 237,215 series. So every node
has a budget, in series, per family and in total. A label combination that would pass either is
folded into the family's all-``other`` combination: counters and gauges are summed into it and
histograms merged, so totals stay right and only the breakdown is lost. The folded combinations are
reported per node in ``libp2p_exporter_series_folded``.

A node's samples are held until ``close()``, because a folded combination must be summed into its
``other`` combination before either is written. Held cheaply: the writes are kept as they came, and
one pass at close checks whether folding could change anything (a combination past its family's
room or the node's). When nothing could (every node within its budget) they are
passed on unchanged, in the order written; otherwise they are merged per combination, folded,
trimmed to the node-wide bound and written family by family in the order first written, then the
fold count.
"""

from __future__ import annotations

from collections import Counter

from exporter.model.catalogue import Family, Labels, Writer
from exporter.model.histogram import Histogram
from exporter.model.labels import OTHER
from exporter.settings import Limits

FOLDED = Family(
    "libp2p_exporter_series_folded",
    "gauge",
    "Label combinations folded into an all-'other' combination at the last scrape, because the "
    "node's series budget (per family or in total) was reached.",
)

_GAUGE, _COUNTER, _HISTOGRAM = 0, 1, 2
_Key = tuple[tuple[str, str], ...]
_Record = tuple[int, Family, "float | Histogram", "Labels | None"]


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
        "_kinds",
        "_records",
        "_total",
        "_used",
        "folded",
        "out",
        "series_per_family",
        "series_per_node",
    )

    def __init__(
        self,
        out: Writer,
        series_per_family: int = Limits.series_per_family,
        series_per_node: int = Limits.series_per_node,
    ) -> None:
        self.out = out
        self.series_per_family = series_per_family
        self.series_per_node = series_per_node
        self._records: list[_Record] = []  # the writes as they came
        # Only when something must be folded: family -> its combinations in the order first written,
        # and the series each family and the node hold.
        self._entries: dict[Family, dict[_Key, _Entry]] = {}
        self._kinds: dict[Family, int] = {}
        self._used: dict[Family, int] = {}
        self._total = 0
        self.folded = 0  # label combinations folded into 'other'

    # -- the Writer interface ------------------------------------------------------------------
    # Every write is kept as it came: whether anything must be folded is decided once, at close.

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self._records.append((_GAUGE, family, value, labels))

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self._records.append((_COUNTER, family, value, labels))

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        self._records.append((_HISTOGRAM, family, hist, labels))

    # -- a mapper that failed ------------------------------------------------------------------

    def mark(self) -> int:
        """Where the samples stand now, for ``discard``."""
        return len(self._records)

    def discard(self, mark: int) -> None:
        """Drop what was written since ``mark``."""
        del self._records[mark:]

    # -- writing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Write the held samples through ``out``, within the budget; then the fold count."""
        records, self._records = self._records, []
        if self._fits(records):  # the common case: every write passes on unchanged
            out = self.out
            write = (out.gauge, out.counter, out.histogram)  # by kind
            for kind, family, value, labels in records:
                write[kind](family, value, labels)  # type: ignore[arg-type]  # the kind says which it is
            return
        for kind, family, value, labels in records:
            self._fold_put(kind, family, value if kind == _HISTOGRAM else float(value), labels)  # type: ignore[arg-type]
        self._trim()
        out = self.out
        for family, entries in self._entries.items():
            kind = self._kinds[family]
            for entry in entries.values():
                held = entry.value
                if isinstance(held, Histogram):
                    out.histogram(family, held, entry.labels)
                elif kind == _COUNTER:
                    out.counter(family, held, entry.labels)
                else:
                    out.gauge(family, held, entry.labels)
        self._entries.clear()
        if self.folded:
            out.gauge(FOLDED, float(self.folded))

    def _fits(self, records: list[_Record]) -> bool:
        """True when the folding pass would change nothing, so the writes may pass on as they are:
        every family (and the node) so far within its budget that none of its combinations could
        have been folded. Conservative: False sends the writes through the exact folding pass, which
        gives the same result whenever nothing folds. A combination written twice is not looked for
        here (a hash per sample, a fifth of a changed node's render): writers take each combination
        once per family, which tests/unit/test_catalogue.py holds every mapper to."""
        used = Counter([family for kind, family, _, _ in records if kind != _HISTOGRAM])  # one series each
        widest = dict.fromkeys(used, 1)
        for kind, family, value, _ in records:
            if kind == _HISTOGRAM:
                cost = len(value.bounds) + 3  # type: ignore[union-attr]
                used[family] += cost
                if cost > widest.get(family, 0):
                    widest[family] = cost
        # A combination is folded when its family's series so far plus twice its own pass the family's
        # budget: the family's final count plus its widest combination bounds that from above.
        per_family = self.series_per_family
        if any(n + widest[family] > per_family for family, n in used.items()):
            return False
        return sum(used.values()) <= self.series_per_node

    # -- folding -------------------------------------------------------------------------------

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
            self.folded += 1
            labels = {k: OTHER for k in labels}
            key = tuple(labels.items())
            entry = entries.get(key)
            if entry is not None:
                entry.add(value)
                return
        entries[key] = _Entry(labels, value)
        self._used[family] = used + cost
        self._total += cost

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
                self.folded += 1
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
    out.native = hist.native.copy() if hist.native is not None else None
    out.exemplar = hist.exemplar
    return out


def _merge(into: Histogram, other: Histogram) -> None:
    if into.bounds != other.bounds:  # never within one family; keep the totals right anyway
        into.counts[-1] += other.count
    else:
        into.counts = [a + b for a, b in zip(into.counts, other.counts)]
    into.total += other.total
    into.count += other.count
    if into.native is not None and other.native is not None:
        into.native.merge(other.native)
    if other.exemplar is not None and (into.exemplar is None or other.exemplar[2] > into.exemplar[2]):
        into.exemplar = other.exemplar  # the newer one stands for the merged combination
