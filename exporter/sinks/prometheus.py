"""The Prometheus sink: each node's exposition block rendered once per change, joined per scrape.

``Exposition`` serves /metrics and /probe: a node's block (its samples in both formats, as bytes) is
rendered again only when the node's version moved (``NodeState.version``, its freshness, its live
session), lazily at the first scrape after the change. ``HubCollector`` builds prometheus_client
families afresh instead, for callers that want ``Metric`` objects (backfill's OpenMetrics files).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from prometheus_client import ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import __version__
from exporter.model.families import Families, Scoped
from exporter.pipeline.hub import Hub
from exporter.pipeline.node import NodeState
from exporter.sinks.exposition import (
    Block,
    BlockWriter,
    CachedBlock,
    Format,
    collector_block,
    encode_body,
    join,
    metrics_block,
    negotiate,
)

SCRAPE_DURATION = "libp2p_exporter_scrape_duration_seconds"


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
        else:
            nodes = [n for n in nodes if not n.hidden]  # probe-only nodes: /probe serves them
        return sorted(nodes, key=lambda n: n.name)

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        card = self.hub.cardinality
        fams = Families(card.series_per_family, card.series_per_node)
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
            write_scrape_duration(scope, time.perf_counter() - started)
        return fams.metrics()

    def _globals(self, fams: Families) -> None:
        _write_globals(self.hub, fams.scoped({}))


def _write_globals(hub: Hub, out: Scoped | BlockWriter) -> None:
    """The exporter's own families that belong to no node."""
    out.info("libp2p_exporter_build", "The exporter's version.", {"version": __version__})
    out.gauge("libp2p_exporter_nodes", "Nodes the exporter knows about.", len(hub.nodes))
    for guard in hub.cardinality.guards():
        out.counter(
            "libp2p_exporter_label_values_folded",
            "Label values a remote peer controls that went past the allow-list and cap and became 'other'.",
            guard.folded,
            {"label": guard.label},
        )
    for write in hub.global_writers:
        write(out)


def write_scrape_duration(out: Scoped | BlockWriter, seconds: float) -> None:
    out.gauge(SCRAPE_DURATION, "Time spent building this scrape's metric families.", seconds)


def _fill(hub: Hub, node: NodeState, out: BlockWriter, fresh: bool) -> None:
    """What ``HubCollector.collect`` writes for one node (the caller holds the node's lock), within
    the node's series budget: the mappers write into a budgeted scope, replayed into the block."""
    card = hub.cardinality
    scoped = Families(card.series_per_family, card.series_per_node).scoped({})
    for mapper in hub.mappers:
        if mapper.always or fresh:
            mapper.collect(node.accs[mapper.name], node, scoped)
    scoped.replay(out)


class Exposition:
    """The hub's exposition from per-node blocks, each rendered at most once per change of its node.

    Safe to call from several threads at once (scrapes run off the event loop): a node's block is
    read and rendered under the node's lock.
    """

    def __init__(self, hub: Hub, *, process: bool = True) -> None:
        self.hub = hub
        # The process's own process_* metrics (CPU, memory, fds), from prometheus_client; not
        # registered anywhere, so only this exposition collects it.
        self.process = ProcessCollector(registry=None) if process else None
        self._cache: dict[str, tuple[NodeState, CachedBlock]] = {}
        self._lock = threading.Lock()
        self._dropped_renders = 0  # renders of blocks since forgotten (their nodes were removed)
        self._local = threading.local()  # the scrape duration this thread's last /metrics reported

    @property
    def renders(self) -> int:
        """Node blocks rendered so far (for tests and benchmarks)."""
        with self._lock:
            held = list(self._cache.values())
        return self._dropped_renders + sum(cached.renders for _, cached in held)

    def _cached(self, node: NodeState) -> CachedBlock:
        with self._lock:
            held = self._cache.get(node.name)
            # A node removed and added again under the same name is a new object: start afresh.
            if held is None or held[0] is not node:
                if held is not None:
                    self._dropped_renders += held[1].renders
                held = self._cache[node.name] = (node, CachedBlock(node.base_labels))
            return held[1]

    def block(self, node: NodeState) -> Block:
        """The node's block, rendered now only if the node changed since the last render."""
        cached = self._cached(node)
        hub = self.hub
        with node.lock:
            session = node.session
            fresh = node.fresh()  # read once: the block shows what its version says
            version = (
                node.version,
                fresh,
                len(hub.mappers),
                node.stale_after_s,
                session.fingerprint() if session is not None else None,
            )
            return cached.get(version, lambda out: _fill(hub, node, out, fresh))

    def _forget_removed(self) -> None:
        with self._lock:
            for name in [n for n, (node, _) in self._cache.items() if self.hub.nodes.get(n) is not node]:
                self._dropped_renders += self._cache.pop(name)[1].renders

    def metrics(self, fmt: Format = Format.TEXT) -> bytes:
        """Every node (sorted by name), then the globals, the scrape's duration and process_*."""
        started = time.perf_counter()
        self._forget_removed()
        # Probe-only nodes are served by /probe alone: a node scraped both ways would count twice.
        nodes = sorted((n for n in self.hub.nodes.values() if not n.hidden), key=lambda n: n.name)
        blocks = [self.block(node) for node in nodes]
        if self.hub.trace_mappers:  # fleet-wide trace metrics (pubsub): few samples, built per scrape
            traces = Families()
            for trace_mapper in self.hub.trace_mappers:
                trace_mapper.collect(traces)
            blocks.append(metrics_block(traces.metrics()))
        writer = BlockWriter()
        _write_globals(self.hub, writer)
        blocks.append(writer.finish())
        timing = BlockWriter()
        self._local.duration = duration = time.perf_counter() - started
        write_scrape_duration(timing, duration)
        blocks.append(timing.finish())
        if self.process is not None:
            blocks.append(collector_block(self.process))
        return join(blocks, fmt)

    def reported_duration(self) -> float | None:
        """The ``libp2p_exporter_scrape_duration_seconds`` this thread's last ``metrics()`` wrote."""
        return getattr(self._local, "duration", None)

    def probe(self, name: str, fmt: Format = Format.TEXT) -> bytes:
        """One node's block alone (nothing when the hub has no such node)."""
        node = self.hub.nodes.get(name)
        return join([self.block(node)] if node is not None else [], fmt)

    def respond(self, accept: str, accept_encoding: str, node: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers for a request: OpenMetrics or text by Accept, gzip by Accept-Encoding."""
        fmt = negotiate(accept)
        body = self.metrics(fmt) if node is None else self.probe(node, fmt)
        body, encoding = encode_body(body, accept_encoding)
        headers = {"Content-Type": fmt.content_type}
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        return body, headers


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in (accept or "")


def render(collector: HubCollector, accept: str = "") -> tuple[bytes, str]:
    """The exposition body and its content type, OpenMetrics when the scraper asks for it."""
    if wants_openmetrics(accept):
        return generate_openmetrics(collector), OPENMETRICS_TYPE
    return generate_latest(collector), CONTENT_TYPE_LATEST
