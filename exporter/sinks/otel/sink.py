"""The tracing sink's lifecycle: a hub listener that keeps one NodeTracer per node, retires a node's
tracer when the node restarts or leaves, and ends and flushes everything at shutdown (bounded).
Every node's ended spans share one export queue and its thread."""

from __future__ import annotations

import logging
import threading

from exporter.pipeline.events import EventView
from exporter.pipeline.exemplars import ExportedSpans
from exporter.pipeline.hub import Listener
from exporter.pipeline.node import NodeState, SnapshotUpdate
from exporter.pipeline.throttle import SpanShare
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.otel.config import TracingConfig
from exporter.sinks.otel.export import Send, SpanQueue
from exporter.sinks.otel.metrics import SpanStatsBook
from exporter.sinks.otel.spans import NodeTracer

log = logging.getLogger(__name__)


class OtelSink(Listener):
    """The hub listener: one NodeTracer per node, created when the node first needs a span."""

    def __init__(
        self,
        cfg: TracingConfig,
        book: SpanStatsBook,
        send: Send | None = None,
        share: SpanShare | None = None,
    ) -> None:
        self.cfg = cfg
        self.share = share or SpanShare()
        self.book = book
        self.queue = SpanQueue(cfg, send)  # OTLP as cfg and the OTEL_* environment say, unless ``send`` is given
        self.tracers: dict[str, NodeTracer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _tracer(self, node: NodeState) -> NodeTracer | None:
        tracer = self.tracers.get(node.name)
        if tracer is None and not self._closed:
            stats = self.book.get(node.name)
            if node.spans is None:  # exemplars: the node's mappers read what was exported
                node.spans = ExportedSpans(on_change=node.touch)
            tracer = self.tracers[node.name] = NodeTracer(node, self.cfg, stats, self.queue, self.share)
        return tracer

    def _fault(self, node: NodeState, what: str) -> None:
        """Tracing must never break ingestion or metrics: log the fault and count the span lost."""
        log.exception("node %s: tracing sink failed on %s", node.name, what)
        stats = self.book.get(node.name)
        with stats.lock:
            stats.dropped["error"] += 1

    def on_runtime(self, node: NodeState, runtime: pb.Runtime) -> None:
        try:
            with self._lock:
                self._runtime(node, runtime)
        except Exception:
            self._fault(node, "a runtime message")

    def on_event(self, node: NodeState, event: EventView) -> None:
        try:
            with self._lock:
                tracer = self._tracer(node)
                if tracer is not None:
                    tracer.on_event(event)
        except Exception:
            self._fault(node, "an event")

    def on_update(self, node: NodeState, update: SnapshotUpdate) -> None:
        try:
            with self._lock:
                tracer = self._tracer(node)
                if tracer is not None:
                    tracer.on_update(update)
        except Exception:
            self._fault(node, "a state")

    def on_removed(self, name: str) -> None:
        self.forget(name)
        self.book.forget(name)

    def _runtime(self, node: NodeState, runtime: pb.Runtime) -> None:
        """A new peer id is a new node: its old spans end and its resource is replaced."""
        old = self.tracers.get(node.name)
        if old is None or not old.identity or not runtime.peer_id or old.identity == runtime.peer_id:
            return
        log.info("node %s: new peer id; ending its open spans and starting a new trace resource", node.name)
        del self.tracers[node.name]
        self._retire(old, "node_restart")

    def _retire(self, tracer: NodeTracer, reason: str) -> None:
        """End a tracer's open spans; they leave with the queue's next batch."""
        tracer.close_open(reason)

    def forget(self, name: str) -> None:
        """A node removed from the hub: end its spans."""
        with self._lock:
            tracer = self.tracers.pop(name, None)
            if tracer is not None:
                self._retire(tracer, "node_removed")

    def flush(self, timeout_s: float = 5.0) -> bool:
        return self.queue.flush(timeout_s)

    def shutdown(self, timeout_s: float | None = None) -> None:
        """End open spans (marked) and export what is queued, waiting at most ``timeout_s``."""
        timeout_s = self.cfg.shutdown_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._closed = True
            tracers = list(self.tracers.values())
            self.tracers.clear()
            for tracer in tracers:
                n = tracer.close_open("shutdown")
                if n:
                    log.info("node %s: ended %d span(s) still open at shutdown", tracer.name, n)
        if not self.queue.shutdown(timeout_s):
            log.warning("tracing: spans not flushed within %.1fs at shutdown (collector down or slow?)", timeout_s)
