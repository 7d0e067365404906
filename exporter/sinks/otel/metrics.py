"""Tracing's self-metrics: what each node's spans became (started, sampled out, dropped, exported).

The span side writes a ``SpanStats`` per node into a ``SpanStatsBook``; ``TracingMetrics`` (a mapper
the install step adds to the hub) reads the same book at scrape time. ``QueueGate`` and
``CountingExporter`` sit in the SDK's export path and count what the SDK itself would drop silently.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.model.catalogue import Family, Writer
from exporter.model.labels import Cardinality
from exporter.pipeline.exemplars import ExportedSpans
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

log = logging.getLogger(__name__)


@dataclass
class SpanStats:
    """One node's tracing counters, exported as ``libp2p_exporter_spans_*`` by ``TracingMetrics``."""

    started: Counter[str] = field(default_factory=Counter)  # by kind
    sampled_out: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    open_spans: int = 0
    queued: int = 0  # ended, handed to the batch processor, not yet through an export
    exported: int = 0
    export_failed: int = 0  # spans in failed batches
    batches: Counter[str] = field(default_factory=Counter)  # success | failure
    lock: threading.Lock = field(default_factory=threading.Lock)


class SpanStatsBook:
    """Each node's SpanStats, by node name: the span side writes them, the mapper reads them."""

    def __init__(self) -> None:
        self._by_node: dict[str, SpanStats] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> SpanStats:
        with self._lock:
            stats = self._by_node.get(name)
            if stats is None:
                stats = self._by_node[name] = SpanStats()
            return stats

    def forget(self, name: str) -> None:
        with self._lock:
            self._by_node.pop(name, None)


KINDS = ("connection", "stream", "dht_query")
DROP_REASONS = ("open_cap", "queue_full", "bad_event", "error")


class QueueGate:
    """A span processor in front of the batch processor that bounds and counts its queue.

    The SDK's batch queue drops spans silently when full (a collector down for long); here each
    span past the limit is counted as dropped (``queue_full``) before it reaches the queue.
    """

    def __init__(self, inner: Any, stats: SpanStats, limit: int) -> None:
        self.inner = inner
        self.stats = stats
        self.limit = limit

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Any) -> None:
        """Part of the SDK's processor interface; nothing to do before the end."""

    def on_end(self, span: Any) -> None:
        with self.stats.lock:
            if self.stats.queued >= self.limit:
                self.stats.dropped["queue_full"] += 1
                return
            self.stats.queued += 1
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


SPANS_STARTED = Family(
    "libp2p_exporter_spans_started",
    "counter",
    f"Spans started for this node, by kind ({', '.join(KINDS)}).",
    ("kind",),
)
SPANS_SAMPLED_OUT = Family(
    "libp2p_exporter_spans_sampled_out",
    "counter",
    "Spans not recorded because sampling left them out, by kind.",
    ("kind",),
)
SPANS_DROPPED = Family(
    "libp2p_exporter_spans_dropped",
    "counter",
    "Spans not recorded: open_cap (too many open spans), queue_full (export queue full while "
    "the collector lags), bad_event (DHT event without a usable duration), error (a sink fault).",
    ("reason",),
)
SPANS_OPEN = Family("libp2p_exporter_spans_open", "gauge", "Connection and stream spans open now.")
SPANS_EXPORTED = Family("libp2p_exporter_spans_exported", "counter", "Spans the collector accepted.")
SPANS_EXPORT_FAILED = Family(
    "libp2p_exporter_spans_export_failed",
    "counter",
    "Spans in export batches that failed (collector down, slow or refusing).",
)
SPAN_EXPORTS = Family("libp2p_exporter_span_exports", "counter", "OTLP export requests, by result.", ("result",))


class TracingMetrics(Mapper):
    """Puts each node's SpanStats in the hub's Prometheus output (always, like the other self-metrics)."""

    name = "tracing"
    always = True

    def __init__(self, cardinality: Cardinality, book: SpanStatsBook) -> None:
        super().__init__(cardinality)
        self.book = book

    def collect(self, acc: Any, node: NodeState, out: Writer) -> None:
        stats = self.book.get(node.name)
        with stats.lock:
            for kind in KINDS:
                out.counter(SPANS_STARTED, stats.started.get(kind, 0), {"kind": kind})
                out.counter(SPANS_SAMPLED_OUT, stats.sampled_out.get(kind, 0), {"kind": kind})
            out.counters(SPANS_DROPPED, "reason", stats.dropped, DROP_REASONS)
            out.gauge(SPANS_OPEN, stats.open_spans)
            out.counter(SPANS_EXPORTED, stats.exported)
            out.counter(SPANS_EXPORT_FAILED, stats.export_failed)
            for result in ("success", "failure"):
                out.counter(SPAN_EXPORTS, stats.batches.get(result, 0), {"result": result})


class CountingExporter:
    """Wraps an OTLP span exporter to count what reached the collector and what did not.

    The SDK's own flush result says nothing about delivery; the exporter's result per batch does.
    Failures are logged once when they start and once when export recovers, not per batch.
    """

    def __init__(self, inner: Any, stats: SpanStats, node: str = "", exported: ExportedSpans | None = None) -> None:
        self.inner = inner
        self.stats = stats
        self.node = node
        self.exported = exported  # told which spans the collector accepted (exemplars)
        self.failing = 0  # consecutive failed batches

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult  # optional extra: imported on use

        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the worker thread
            log.warning("OTLP export raised: %s", exc)
            result = SpanExportResult.FAILURE
        ok = result == SpanExportResult.SUCCESS
        if self.exported is not None:
            for span in spans:
                ctx = span.context
                if ok:
                    self.exported.exported(ctx.span_id, ctx.trace_id)
                else:
                    self.exported.failed(ctx.span_id)
        with self.stats.lock:
            self.stats.queued = max(0, self.stats.queued - len(spans))
            if ok:
                self.stats.batches["success"] += 1
                self.stats.exported += len(spans)
            else:
                self.stats.batches["failure"] += 1
                self.stats.export_failed += len(spans)
        if not ok and not self.failing:
            log.warning(
                "node %s: OTLP span export failing (collector down, slow or refusing); spans are dropped and "
                "counted in libp2p_exporter_spans_export_failed_total until it recovers",
                self.node,
            )
        elif ok and self.failing:
            log.info("node %s: OTLP span export recovered after %d failed batch(es)", self.node, self.failing)
        self.failing = 0 if ok else self.failing + 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))
