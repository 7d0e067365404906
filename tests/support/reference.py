"""A reference writer: the hub's samples as prometheus_client families, rendered by prometheus_client.

``MetricsWriter`` is a ``Writer`` (``exporter.model.catalogue``) that builds prometheus_client
``Metric`` objects, so tests can hold the exporter's own exposition (``sinks/exposition``) against
prometheus_client's ``generate_latest`` for the very same writes, and read samples in process.
``HubCollector`` drives the hub's own ``write_node``/``write_traces``/``write_globals`` into it,
as a scrape does. Test code only: the exporter never builds ``Metric`` objects for its nodes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.model.catalogue import Family, Labelled, Labels, Writer
from exporter.model.histogram import Histogram
from exporter.pipeline.hub import Hub
from exporter.pipeline.node import NodeState
from exporter.sinks.exposition import Format, negotiate
from exporter.sinks.prometheus import write_scrape_duration


class MetricsWriter(Writer):
    """Samples into prometheus_client families, merged by family name in the order first written."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def _family(self, family: Family) -> Metric:
        fam = self.families.get(family.name)
        if fam is None:
            fam = self.families[family.name] = Metric(family.name, family.help, family.type)
        return fam

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self._family(family).add_sample(family.name, dict(labels or {}), float(value))

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self._family(family).add_sample(family.name + "_total", dict(labels or {}), float(value))

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        fam, name, base = self._family(family), family.name, dict(labels or {})
        for le, count in hist.cumulative():
            fam.add_sample(name + "_bucket", {**base, "le": le}, float(count))
        g = "_g" if family.type == "gaugehistogram" else "_"
        fam.add_sample(name + g + "count", base, float(hist.count))
        fam.add_sample(name + g + "sum", base, float(hist.total))

    def metrics(self) -> list[Metric]:
        return list(self.families.values())


class HubCollector:
    """The hub's nodes (all shown on /metrics, or a chosen few) as prometheus_client families,
    written by the same hub methods the Prometheus sink calls; then, unless ``with_globals`` is
    False, the trace families, the globals and the scrape duration."""

    def __init__(self, hub: Hub, nodes: Iterable[str] | None = None, *, with_globals: bool = True) -> None:
        self.hub = hub
        self.only = set(nodes) if nodes is not None else None
        self.with_globals = with_globals

    def _nodes(self) -> list[NodeState]:
        nodes = list(self.hub.nodes.values())
        if self.only is not None:
            nodes = [n for n in nodes if n.name in self.only]
        else:
            nodes = [n for n in nodes if not n.hidden]
        return sorted(nodes, key=lambda n: n.name)

    def collect(self) -> list[Metric]:
        started = time.perf_counter()
        out = MetricsWriter()
        for node in self._nodes():
            with node.lock:
                self.hub.write_node(node, Labelled(out, node.base_labels))
        if self.with_globals:
            self.hub.write_traces(out)
            self.hub.write_globals(out)
            write_scrape_duration(out, time.perf_counter() - started)
        return out.metrics()


class Listed:
    """Already collected families, for prometheus_client's renderers."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def render(collector: HubCollector | Listed, accept: str = "") -> tuple[bytes, str]:
    """prometheus_client's exposition of these families, OpenMetrics when ``accept`` asks for it
    (decided by the exporter's one negotiation)."""
    if negotiate(accept) is Format.OPENMETRICS:
        return generate_openmetrics(collector), OPENMETRICS_TYPE  # type: ignore[arg-type]
    return generate_latest(collector), CONTENT_TYPE_LATEST  # type: ignore[arg-type]
