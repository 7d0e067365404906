"""The Prometheus sink: a custom collector that builds every family afresh at each scrape."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import __version__
from exporter.model.families import Families
from exporter.pipeline.hub import Hub
from exporter.pipeline.node import NodeState


class HubCollector:
    """Reads the hub's nodes (all, or a chosen few) into metric families, nothing kept between scrapes."""

    def __init__(self, hub: Hub, nodes: Iterable[str] | None = None, *, with_globals: bool = True) -> None:
        self.hub = hub
        self.only = set(nodes) if nodes is not None else None
        self.with_globals = with_globals
        self.last_duration = 0.0

    def _nodes(self) -> list[NodeState]:
        nodes = list(self.hub.nodes.values())
        if self.only is not None:
            nodes = [n for n in nodes if n.name in self.only]
        return sorted(nodes, key=lambda n: n.name)

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        fams = Families()
        mappers = self.hub.mappers
        for node in self._nodes():
            with node.lock:
                out = fams.scoped(node.base_labels)
                fresh = node.fresh()
                for mapper in mappers:
                    if mapper.always or fresh:
                        mapper.collect(node.accs[mapper.name], node, out)
        if self.with_globals:  # the whole exporter's view, not one node's (a /probe leaves them out)
            for trace_mapper in self.hub.trace_mappers:
                trace_mapper.collect(fams)
            self._globals(fams)
            scope = fams.scoped({})
            scope.gauge(
                "libp2p_exporter_scrape_duration_seconds",
                "Time spent building this scrape's metric families.",
                time.perf_counter() - started,
            )
        return fams.metrics()

    def _globals(self, fams: Families) -> None:
        scope = fams.scoped({})
        scope.info("libp2p_exporter_build", "The exporter's version.", {"version": __version__})
        scope.gauge("libp2p_exporter_nodes", "Nodes the exporter knows about.", len(self.hub.nodes))
        for guard in self.hub.cardinality.guards():
            scope.counter(
                "libp2p_exporter_label_values_folded",
                "Label values a remote peer controls that went past the allow-list and cap and became 'other'.",
                guard.folded,
                {"label": guard.label},
            )


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in (accept or "")


def render(collector: HubCollector, accept: str = "") -> tuple[bytes, str]:
    """The exposition body and its content type, OpenMetrics when the scraper asks for it."""
    if wants_openmetrics(accept):
        return generate_openmetrics(collector), OPENMETRICS_TYPE  # type: ignore[arg-type]
    return generate_latest(collector), CONTENT_TYPE_LATEST  # type: ignore[arg-type]
