"""The Prometheus sink: each node's exposition block rendered once per change, joined per scrape.

``Exposition`` serves /metrics and /probe. A node's block (its samples in both formats, as bytes) is
written by ``Hub.write_node`` into a ``BlockWriter`` (the node's mappers, through its series budget)
and kept until the node's version moves (``NodeState.current_version``): rendered again lazily, at
the first scrape after the change. A hidden node (``--metrics.nodes none``: /probe alone serves it)
is rendered at every probe and not kept (``Exposition.block``). The trace mappers' and the
exporter's own families are written into writers of the same kind at every full scrape.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import ProcessCollector

from exporter.model.catalogue import Family, Writer
from exporter.pipeline.hub import Hub
from exporter.pipeline.node import NodeState
from exporter.sinks.exposition import (
    Block,
    BlockWriter,
    CachedBlock,
    Format,
    ProtoBlock,
    ProtoWriter,
    accepts_gzip,
    collector_block,
    collector_proto_block,
    encode_body,
    join,
    join_parts,
    join_proto,
    join_proto_parts,
    negotiate,
)

SCRAPE_DURATION = Family(
    "libp2p_exporter_scrape_duration_seconds", "gauge", "Time spent building this scrape's metric families."
)


def write_scrape_duration(out: Writer, seconds: float) -> None:
    out.gauge(SCRAPE_DURATION, seconds)


class Exposition:
    """The hub's exposition from per-node blocks, each rendered at most once per change of its node
    (a hidden node's at each probe: see ``_render_uncached``).

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
        self._dropped_renders = 0  # renders of blocks since forgotten (nodes removed or hidden)
        self._uncached_renders = 0  # hidden nodes' renders: served once, never kept
        self._local = threading.local()  # the scrape duration this thread's last /metrics reported

    @property
    def renders(self) -> int:
        """Node blocks rendered so far (for tests and benchmarks)."""
        with self._lock:
            held = list(self._cache.values())
        return self._dropped_renders + self._uncached_renders + sum(cached.renders for _, cached in held)

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
        """The node's block, rendered now only if the node changed since the last render (a hidden
        node's: rendered now, not kept)."""
        if node.hidden:
            writer = BlockWriter(node.base_labels)
            self._render_uncached(node, writer)
            return writer.finish()
        cached = self._cached(node)
        hub = self.hub
        with node.lock:
            return cached.get(node.current_version(), lambda out: hub.write_node(node, out))

    def proto_block(self, node: NodeState) -> ProtoBlock:
        """The node's protobuf block, rendered now only if the node changed since its last protobuf
        render (a hidden node's: rendered now, not kept)."""
        if node.hidden:
            proto = ProtoWriter(node.base_labels)
            self._render_uncached(node, proto)
            return proto.finish()
        cached = self._cached(node)
        hub = self.hub
        with node.lock:
            return cached.get_proto(node.current_version(), lambda out: hub.write_node(node, out))

    def _render_uncached(self, node: NodeState, out: Writer) -> None:
        """Write a hidden node into ``out`` for one probe, keeping nothing.

        Why not cache it: a hidden node is served by /probe alone, and a node is probed every scrape
        interval (15 s) while its States move its version every second or so, so a kept block was
        almost never served again: it only held memory until the next probe replaced it (0.135
        MiB/node with the default histogram profile, issue 20). The price: an unchanged node probed
        twice (two Prometheus replicas within one State) is rendered twice.
        """
        with self._lock:
            self._uncached_renders += 1
            held = self._cache.get(node.name)
            if held is not None and held[0] is node:  # cached while on /metrics, hidden since (a reload)
                self._dropped_renders += self._cache.pop(node.name)[1].renders
        with node.lock:
            self.hub.write_node(node, out)

    def _forget_removed(self) -> None:
        with self._lock:
            for name in [n for n, (node, _) in self._cache.items() if self.hub.nodes.get(n) is not node]:
                self._dropped_renders += self._cache.pop(name)[1].renders

    def metrics(self, fmt: Format = Format.TEXT) -> bytes:
        """Every node (sorted by name), then the trace families, the globals, the scrape's duration
        and process_*."""
        return b"".join(self.metrics_parts(fmt))

    def metrics_parts(self, fmt: Format = Format.TEXT) -> list[bytes]:
        """``metrics()`` as its pieces in order: the cached blocks' bytes themselves, no copy."""
        with self.hub.rendering.held():  # ingest makes way while a full scrape renders
            return self._parts(fmt)

    def _parts(self, fmt: Format) -> list[bytes]:
        started = time.perf_counter()
        self._forget_removed()
        # Probe-only nodes are served by /probe alone: a node scraped both ways would count twice.
        nodes = sorted((n for n in self.hub.nodes.values() if not n.hidden), key=lambda n: n.name)
        if fmt is Format.PROTOBUF:
            return self._metrics_proto(nodes, started)
        blocks = [self.block(node) for node in nodes]
        if self.hub.trace_mappers:  # fleet-wide trace metrics (pubsub): few samples, written per scrape
            traces = BlockWriter()
            self.hub.write_traces(traces)
            blocks.append(traces.finish())
        writer = BlockWriter()
        self.hub.write_globals(writer)
        blocks.append(writer.finish())
        timing = BlockWriter()
        self._local.duration = duration = time.perf_counter() - started
        write_scrape_duration(timing, duration)
        blocks.append(timing.finish())
        if self.process is not None:
            blocks.append(collector_block(self.process))
        return join_parts(blocks, fmt)

    def _metrics_proto(self, nodes: list[NodeState], started: float) -> list[bytes]:
        blocks = [self.proto_block(node) for node in nodes]
        if self.hub.trace_mappers:
            traces = ProtoWriter()
            self.hub.write_traces(traces)
            blocks.append(traces.finish())
        writer = ProtoWriter()
        self.hub.write_globals(writer)
        blocks.append(writer.finish())
        timing = ProtoWriter()
        self._local.duration = duration = time.perf_counter() - started
        write_scrape_duration(timing, duration)
        blocks.append(timing.finish())
        if self.process is not None:
            blocks.append(collector_proto_block(self.process))
        return join_proto_parts(blocks)

    def reported_duration(self) -> float | None:
        """The ``libp2p_exporter_scrape_duration_seconds`` this thread's last ``metrics()`` wrote."""
        return getattr(self._local, "duration", None)

    def probe(self, name: str, fmt: Format = Format.TEXT) -> bytes:
        """One node's block alone (nothing when the hub has no such node)."""
        node = self.hub.nodes.get(name)
        if fmt is Format.PROTOBUF:
            return join_proto([self.proto_block(node)] if node is not None else [])
        return join([self.block(node)] if node is not None else [], fmt)

    def respond_parts(self, accept: str, accept_encoding: str) -> tuple[list[bytes], dict[str, str], bool]:
        """The whole exposition's pieces, the headers, and whether to gzip them as they are sent."""
        fmt = negotiate(accept)
        parts = self.metrics_parts(fmt)
        headers = {"Content-Type": fmt.content_type}
        gz = accepts_gzip(accept_encoding)
        if gz:
            headers["Content-Encoding"] = "gzip"
        return parts, headers, gz

    def respond(self, accept: str, accept_encoding: str, node: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers for a request: protobuf, OpenMetrics or text by Accept, gzip by Accept-Encoding."""
        fmt = negotiate(accept)
        body = self.metrics(fmt) if node is None else self.probe(node, fmt)
        body, encoding = encode_body(body, accept_encoding)
        headers = {"Content-Type": fmt.content_type}
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        return body, headers
