"""The tracing sink's lifecycle: a hub listener that keeps one NodeTracer per node, retires a node's
tracer when the node restarts or leaves, and ends and flushes everything at shutdown (bounded)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from exporter.pipeline.events import EventView
from exporter.pipeline.exemplars import ExportedSpans
from exporter.pipeline.hub import Listener
from exporter.pipeline.node import NodeState, SnapshotUpdate
from exporter.pipeline.throttle import SpanShare
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.otel.config import TracingConfig
from exporter.sinks.otel.metrics import SpanStatsBook
from exporter.sinks.otel.sdk import SpanExporterFactory, node_provider, otlp_exporters
from exporter.sinks.otel.spans import NodeTracer

log = logging.getLogger(__name__)


class OtelSink(Listener):
    """The hub listener: one NodeTracer per node, created when the node first needs a span."""

    def __init__(
        self,
        cfg: TracingConfig,
        book: SpanStatsBook,
        span_exporter: SpanExporterFactory | None = None,
        share: SpanShare | None = None,
    ) -> None:
        self.cfg = cfg
        self.share = share or SpanShare()
        self.book = book
        self.span_exporter = span_exporter or otlp_exporters(cfg)
        self.tracers: dict[str, NodeTracer] = {}
        self._retired: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def _tracer(self, node: NodeState) -> NodeTracer | None:
        tracer = self.tracers.get(node.name)
        if tracer is None and not self._closed:
            stats = self.book.get(node.name)
            if node.spans is None:  # exemplars: the node's mappers read what was exported
                node.spans = ExportedSpans(on_change=node.touch)
            provider = node_provider(node, self.cfg, stats, self.span_exporter(node.name))
            tracer = self.tracers[node.name] = NodeTracer(node, self.cfg, stats, provider, self.share)
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

    def _retire(self, tracer: Any, reason: str) -> None:
        """End a tracer's open spans and flush it in the background; shutdown() waits for it."""
        tracer.close_open(reason)
        t = threading.Thread(target=tracer.shutdown, name=f"otel-retire-{tracer.name}", daemon=True)
        t.start()
        self._retired = [r for r in self._retired if r.is_alive()]  # keep only what is still flushing
        self._retired.append(t)

    def forget(self, name: str) -> None:
        """A node removed from the hub: end its spans and release its provider."""
        with self._lock:
            tracer = self.tracers.pop(name, None)
        if tracer is not None:
            self._retire(tracer, "node_removed")

    def flush(self, timeout_s: float = 5.0) -> bool:
        with self._lock:
            tracers = list(self.tracers.values())
        return all(t.flush(timeout_s) for t in tracers)

    def shutdown(self, timeout_s: float | None = None) -> None:
        """End open spans (marked), flush and close every provider, waiting at most ``timeout_s``."""
        timeout_s = self.cfg.shutdown_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._closed = True
            tracers = list(self.tracers.values())
            self.tracers.clear()
        threads = []
        for tracer in tracers:
            n = tracer.close_open("shutdown")
            if n:
                log.info("node %s: ended %d span(s) still open at shutdown", tracer.name, n)
            t = threading.Thread(target=tracer.shutdown, name=f"otel-shutdown-{tracer.name}", daemon=True)
            t.start()
            threads.append(t)
        deadline = time.monotonic() + timeout_s
        for t in [*threads, *self._retired]:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            log.warning("tracing: spans not flushed within %.1fs at shutdown (collector down or slow?)", timeout_s)


class TracingHandle:
    """What ``install_tracing`` returns; a disabled handle does nothing."""

    def __init__(self, sink: OtelSink | None = None) -> None:
        self.sink = sink

    @property
    def enabled(self) -> bool:
        return self.sink is not None

    def flush(self, timeout_s: float = 5.0) -> bool:
        return self.sink.flush(timeout_s) if self.sink else True

    def shutdown(self, timeout_s: float | None = None) -> None:
        if self.sink is not None:
            self.sink.shutdown(timeout_s)
