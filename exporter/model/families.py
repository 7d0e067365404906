"""Metric families built afresh for each scrape, within a series budget per node.

Mappers write samples here; samples of one family from many nodes merge into one family, each
carrying its node's labels. Nothing here outlives a scrape, so a vanished label value simply stops
being exported.

Labels are capped one by one (``model/labels.py``), but they multiply: dir x transport x security x
muxer x ip_version over a 28-sample histogram gave one hostile node 237,215 series. So every node's
scope has a budget, in series, per family and in total. A label combination that would pass either
is folded into the family's all-``other`` combination: counters and gauges are summed into it and
histograms merged, so totals stay right and only the breakdown is lost. The folded combinations are
reported per node in ``libp2p_exporter_series_folded``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client.metrics_core import Metric

from exporter.model.histogram import Histogram
from exporter.model.labels import OTHER
from exporter.settings import Limits

FOLDED = "libp2p_exporter_series_folded"
FOLDED_HELP = (
    "Label combinations folded into an all-'other' combination at the last scrape, because the "
    "node's series budget (per family or in total) was reached."
)
_Key = tuple[tuple[str, str], ...]


class Writer(Protocol):
    """What a mapper writes samples through (``Scoped`` here, the Prometheus sink's block writer)."""

    def gauge(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None: ...

    def counter(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None: ...

    def histogram(
        self, name: str, doc: str, hist: Histogram, labels: dict[str, str] | None = None, *, gauge: bool = False
    ) -> None: ...


class Families:
    """The families of one scrape; ``metrics()`` ends it and returns them."""

    def __init__(
        self, series_per_family: int = Limits.series_per_family, series_per_node: int = Limits.series_per_node
    ) -> None:
        self._by_name: dict[str, Metric] = {}
        self._scopes: list[Scoped] = []
        self.series_per_family = series_per_family
        self.series_per_node = series_per_node

    def family(self, name: str, doc: str, typ: str, unit: str = "") -> Metric:
        fam = self._by_name.get(name)
        if fam is None:
            fam = Metric(name, doc, typ, unit)
            self._by_name[name] = fam
        return fam

    def metrics(self) -> list[Metric]:
        for scope in self._scopes:
            scope.flush()
        self._scopes.clear()
        return list(self._by_name.values())

    def scoped(self, base: dict[str, str]) -> Scoped:
        scope = Scoped(self, base)
        self._scopes.append(scope)
        return scope


class _Entry:
    """One label combination of one family in one scope: its value (a float or a Histogram)."""

    __slots__ = ("labels", "owned", "value")

    def __init__(self, labels: dict[str, str], value: float | Histogram) -> None:
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


class Scoped:
    """A view of Families that adds fixed labels (the node's) to every sample, within the budget.

    Samples are held until ``Families.metrics()``: a folded combination must be summed into its
    ``other`` combination before either is written."""

    __slots__ = ("_docs", "_entries", "_fams", "_total", "_used", "base", "folded")

    def __init__(self, fams: Families, base: dict[str, str]) -> None:
        self._fams = fams
        self.base = base
        # family name -> (sample type, its combinations in the order first written)
        self._entries: dict[str, tuple[str, dict[_Key, _Entry]]] = {}
        self._docs: dict[str, str] = {}
        self._used: dict[str, int] = {}
        self._total = 0
        self.folded = 0  # label combinations folded into 'other' in this scrape

    def _put(self, name: str, doc: str, typ: str, labels: dict[str, str] | None, value: float | Histogram) -> None:
        self._fams.family(name, doc, typ)  # families keep the order they were first written in
        self._docs.setdefault(name, doc)
        entries = self._entries.setdefault(name, (typ, {}))[1]
        labels = labels or {}
        key: _Key = tuple(labels.items())  # mappers write one combination in one order
        entry = entries.get(key)
        if entry is not None:
            entry.add(value)
            return
        cost = _cost(value)
        used = self._used.get(name, 0)
        # One combination's worth is kept back in each family for its 'other' combination.
        if labels and (
            used + 2 * cost > self._fams.series_per_family or self._total + cost > self._fams.series_per_node
        ):
            self.folded += 1
            labels = {k: OTHER for k in labels}
            key = tuple(labels.items())
            entry = entries.get(key)
            if entry is not None:
                entry.add(value)
                return
        entries[key] = _Entry(labels, value)
        self._used[name] = used + cost
        self._total += cost

    def gauge(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._put(name, doc, "gauge", labels, float(value))

    def info(self, name: str, doc: str, labels: dict[str, str]) -> None:
        """An ``_info`` gauge of value 1 (name given without the suffix)."""
        self._put(name + "_info", doc, "gauge", labels, 1.0)

    def counter(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        """``name`` without ``_total``; the sample gets the suffix."""
        self._put(name, doc, "counter", labels, float(value))

    def counters(
        self,
        name: str,
        doc: str,
        label: str,
        counts: Mapping[str, float],
        known: Iterable[str] = (),
    ) -> None:
        """One counter sample per label value; values known to exist are exported as 0 until seen."""
        for value in sorted(set(counts) | set(known)):
            self.counter(name, doc, counts.get(value, 0), {label: value})

    def histogram(
        self, name: str, doc: str, hist: Histogram, labels: dict[str, str] | None = None, *, gauge: bool = False
    ) -> None:
        """A cumulative histogram, or a point-in-time one (``gauge=True``)."""
        self._put(name, doc, "gaugehistogram" if gauge else "histogram", labels, hist)

    def _trim(self) -> None:
        """Fold the newest combinations of the largest families until the node is within its budget.

        Combinations are checked against the node-wide budget as they arrive, but what no check can
        refuse comes on top: each family's 'other' combination, unlabelled samples and the fold count
        itself. Folding more here, at the end, makes the node-wide budget a hard bound (as long as
        the budget holds one 'other' combination per family and the unlabelled samples).
        """
        budget = self._fams.series_per_node
        if self._total + (1 if self.folded else 0) <= budget:
            return
        excess = self._total + 1 - budget  # + the fold count, written once anything is folded
        for name in sorted(self._entries, key=lambda n: self._used.get(n, 0), reverse=True):
            entries = self._entries[name][1]
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
                self._used[name] -= cost
                self._total -= cost
                excess -= cost

    def replay(self, out: Writer) -> None:
        """Write the held samples, within the budget, through another writer with this API (the
        Prometheus sink's per-node block), in the order first written; then the fold count."""
        self._trim()
        for name, (typ, entries) in self._entries.items():
            doc = self._docs[name]
            for entry in entries.values():
                value = entry.value
                if isinstance(value, Histogram):
                    out.histogram(name, doc, value, entry.labels, gauge=typ == "gaugehistogram")
                elif typ == "counter":
                    out.counter(name, doc, value, entry.labels)
                else:
                    out.gauge(name, doc, value, entry.labels)
        self._entries.clear()
        if self.folded:
            out.gauge(FOLDED, FOLDED_HELP, float(self.folded))

    def flush(self) -> None:
        """Write the held samples into their families (in the order first written), then the fold count."""
        self._trim()
        for name, (typ, entries) in self._entries.items():
            fam = self._fams.family(name, "", typ)
            for entry in entries.values():
                labels = {**self.base, **entry.labels}
                value = entry.value
                if isinstance(value, Histogram):
                    _write_histogram(fam, name, labels, value, gauge=typ == "gaugehistogram")
                else:
                    fam.add_sample(name + "_total" if typ == "counter" else name, labels, value)
        self._entries.clear()
        if self.folded:
            fam = self._fams.family(FOLDED, FOLDED_HELP, "gauge")
            fam.add_sample(FOLDED, dict(self.base), float(self.folded))


def _cost(value: float | Histogram) -> int:
    """Series one combination writes: a histogram's buckets (with +Inf), count and sum; else one."""
    return len(value.bounds) + 3 if isinstance(value, Histogram) else 1


def _write_histogram(fam: Metric, name: str, labels: dict[str, str], hist: Histogram, *, gauge: bool) -> None:
    for le, count in hist.cumulative():
        fam.add_sample(name + "_bucket", {**labels, "le": le}, float(count))
    if gauge:
        fam.add_sample(name + "_gcount", labels, float(hist.count))
        fam.add_sample(name + "_gsum", labels, float(hist.total))
    else:
        fam.add_sample(name + "_count", labels, float(hist.count))
        fam.add_sample(name + "_sum", labels, float(hist.total))


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
