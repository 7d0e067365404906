"""Events: counted by type (bounded), and DHT query events turned into a duration histogram."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.model.catalogue import Family, Writer
from exporter.model.histogram import Histogram
from exporter.model.histogram_profiles import QUERY_DURATION
from exporter.model.labels import OTHER, Cardinality
from exporter.pipeline.events import EventView
from exporter.pipeline.exemplars import Recent, attach
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

EVENTS = Family(
    "libp2p_events", "counter", "Introspection events received, by type (allow-listed, else other).", ("type",)
)
MALFORMED = Family(
    "libp2p_events_malformed", "counter", "Events whose content was not a JSON object; still counted by type."
)
DURATION = Family(
    QUERY_DURATION,
    "histogram",
    "DHT query duration from query events (totalTimeMs), by direction and result.",
    ("direction", "result"),
)

QUERY_RESULTS = frozenset({"success", "error", "timeout", "pending"})


@dataclass
class EventsAcc:
    by_type: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    query_duration: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    query_recent: dict[tuple[str, ...], Recent] = field(default_factory=dict)  # for exemplars


class Events(Mapper):
    name = "events"

    def __init__(self, cardinality: Cardinality) -> None:
        super().__init__(cardinality)
        self.query_duration = cardinality.histograms.layout(QUERY_DURATION)

    def new_accumulator(self) -> EventsAcc:
        return EventsAcc()

    def on_event(self, acc: EventsAcc, event: EventView) -> None:
        acc.by_type[self.card.event_type(event.type or "unknown")] += 1
        if event.content is None:
            acc.malformed += 1
            return
        query = event.dht_query
        if query is None or query.total_ms is None:
            return
        result = query.result.lower()
        key = self.query_duration.key((query.direction, result if result in QUERY_RESULTS else OTHER))
        hist = acc.query_duration.get(key) or acc.query_duration.setdefault(key, self.query_duration.new())
        hist.observe(query.total_ms / 1000.0)
        if event.ts_ms:
            recent = acc.query_recent.get(key) or acc.query_recent.setdefault(key, Recent())
            # The tracing sink's key for the query's span (its id, else the event's type and time).
            span_key = query.query_id or f"{event.type}/{event.ts_ms}"
            recent.add(query.total_ms / 1000.0, "dht_query", span_key, event.ts_ms / 1000.0)

    def collect(self, acc: EventsAcc, node: NodeState, out: Writer) -> None:
        for kind, n in sorted(acc.by_type.items()):
            out.counter(EVENTS, n, {"type": kind})
        out.counter(MALFORMED, acc.malformed)
        if node.spans is not None:
            attach(acc.query_duration, acc.query_recent, node.spans)
        for key, hist in sorted(acc.query_duration.items()):
            out.histogram(DURATION, hist, self.query_duration.label_dict(key))
