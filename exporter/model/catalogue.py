"""Metric families as data, and the one interface every piece of metric code writes through.

A ``Family`` is declared once, at the top of the module that writes it (a mapper, the exporter's own
bookkeeping): its name, type, HELP text and labels. Writers (the Prometheus sink's per-node block,
backfill's timestamped OpenMetrics, the series budget wrapped around either) take samples of those
families through ``Writer``: ``gauge``, ``counter``, ``counters``, ``info`` and ``histogram``.
Nothing here knows an exposition format; the sinks turn the writes into bytes.

``tests/unit/test_catalogue.py`` collects every family declared in ``exporter/``: no name twice,
every one in docs/metrics.md, every series the dashboards and alert rules query among them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.model.histogram import Histogram
from exporter.model.histogram_profiles import FAMILIES as CONFIGURABLE_HISTOGRAMS

TYPES = ("gauge", "counter", "histogram", "gaugehistogram")
# What each type exposes besides (or instead of) the family's own name.
_SUFFIXES = {
    "gauge": ("",),
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}

Labels = Mapping[str, str]


@dataclass(frozen=True, eq=False, slots=True)
class Family:
    """One metric family. ``name`` is the family's name as prometheus_client has it: a counter's
    without ``_total`` (its sample gets the suffix), an info family's with ``_info`` (a gauge of 1).
    ``labels`` are the labels its mapper writes (the node's own labels come on top).

    Compared by identity: declare each family once and import it where it is needed."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: unknown metric type {self.type!r}")

    def series(self) -> tuple[str, ...]:
        """The sample names this family exposes (what a PromQL query names): with ``--histograms.native``
        a configurable histogram is also one native series under the family's own name."""
        names = tuple(self.name + suffix for suffix in _SUFFIXES[self.type])
        return (self.name, *names) if self.name in CONFIGURABLE_HISTOGRAMS else names


class Writer:
    """Where metric code writes samples. Subclasses implement ``gauge``, ``counter`` and
    ``histogram``; ``counters`` and ``info`` are written through them.

    The contract: within one scope (a node, the trace families), each label combination of a family
    is written once, always with its labels in the same order."""

    __slots__ = ()

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        raise NotImplementedError

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        """A counter sample (the name gets ``_total``)."""
        raise NotImplementedError

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        """A cumulative histogram, or a point-in-time one when the family is a ``gaugehistogram``."""
        raise NotImplementedError

    def counters(self, family: Family, label: str, counts: Mapping[str, float], known: Iterable[str] = ()) -> None:
        """One counter sample per label value; values known to exist are exported as 0 until seen."""
        for value in sorted(set(counts) | set(known)):
            self.counter(family, counts.get(value, 0), {label: value})

    def info(self, family: Family, labels: Labels) -> None:
        """An ``_info`` gauge of value 1."""
        self.gauge(family, 1.0, labels)


class Labelled(Writer):
    """Adds fixed labels (a traced node's, say) to every sample written through it."""

    __slots__ = ("base", "out")

    def __init__(self, out: Writer, base: Labels) -> None:
        self.out = out
        self.base = dict(base)

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self.out.gauge(family, value, {**self.base, **labels} if labels else self.base)

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self.out.counter(family, value, {**self.base, **labels} if labels else self.base)

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        self.out.histogram(family, hist, {**self.base, **labels} if labels else self.base)


class Only(Writer):
    """Passes on the samples of the given families and drops the rest."""

    __slots__ = ("names", "out")

    def __init__(self, out: Writer, names: Iterable[str]) -> None:
        self.out = out
        self.names = frozenset(names)

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        if family.name in self.names:
            self.out.gauge(family, value, labels)

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        if family.name in self.names:
            self.out.counter(family, value, labels)

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        if family.name in self.names:
            self.out.histogram(family, hist, labels)
