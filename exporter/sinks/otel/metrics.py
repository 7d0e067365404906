"""Tracing's self-metrics: what each node's spans became (started, sampled out, dropped, exported).

The span side (the span model and the export queue) writes a ``SpanStats`` per node into a
``SpanStatsBook``; ``TracingMetrics`` (a mapper the install step adds to the hub) reads the same book
at scrape time.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from exporter.model.catalogue import Family, Writer
from exporter.model.labels import Cardinality
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
    queued: int = 0  # ended, in the export queue, not yet through an export
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
SPAN_EXPORTS = Family(
    "libp2p_exporter_span_exports",
    "counter",
    "OTLP export requests that carried this node's spans, by result (one request carries many nodes' spans).",
    ("result",),
)


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
