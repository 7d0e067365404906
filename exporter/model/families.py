"""Metric families built afresh for each scrape.

Mappers write samples here; samples of one family from many nodes merge into one family, each
carrying its node's labels. Nothing here outlives a scrape, so a vanished label value simply stops
being exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import Metric

from exporter.model.histogram import Histogram


class Families:
    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def family(self, name: str, doc: str, typ: str, unit: str = "") -> Metric:
        fam = self._by_name.get(name)
        if fam is None:
            fam = Metric(name, doc, typ, unit)
            self._by_name[name] = fam
        return fam

    def metrics(self) -> list[Metric]:
        return list(self._by_name.values())

    def scoped(self, base: dict[str, str]) -> Scoped:
        return Scoped(self, base)


class Scoped:
    """A view of Families that adds fixed labels (the node's) to every sample."""

    __slots__ = ("_fams", "base")

    def __init__(self, fams: Families, base: dict[str, str]) -> None:
        self._fams = fams
        self.base = base

    def _labels(self, labels: dict[str, str] | None) -> dict[str, str]:
        return {**self.base, **labels} if labels else dict(self.base)

    def gauge(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._fams.family(name, doc, "gauge").add_sample(name, self._labels(labels), float(value))

    def info(self, name: str, doc: str, labels: dict[str, str]) -> None:
        """An ``_info`` gauge of value 1 (name given without the suffix)."""
        self._fams.family(name + "_info", doc, "gauge").add_sample(name + "_info", self._labels(labels), 1.0)

    def counter(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        """``name`` without ``_total``; the sample gets the suffix."""
        self._fams.family(name, doc, "counter").add_sample(name + "_total", self._labels(labels), float(value))

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
        fam = self._fams.family(name, doc, "gaugehistogram" if gauge else "histogram")
        base = self._labels(labels)
        for le, count in hist.cumulative():
            fam.add_sample(name + "_bucket", {**base, "le": le}, float(count))
        if gauge:
            fam.add_sample(name + "_gcount", base, float(hist.count))
            fam.add_sample(name + "_gsum", base, float(hist.total))
        else:
            fam.add_sample(name + "_count", base, float(hist.count))
            fam.add_sample(name + "_sum", base, float(hist.total))
