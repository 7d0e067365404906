"""Events: counted by type (bounded), and DHT query events turned into a duration histogram."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.model.families import Scoped
from exporter.model.histogram import QUERY_DURATION_BUCKETS, Histogram
from exporter.model.labels import OTHER
from exporter.pipeline.events import EventView
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

QUERY_RESULTS = frozenset({"success", "error", "timeout", "pending"})


@dataclass
class EventsAcc:
    by_type: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    query_duration: dict[tuple[str, str], Histogram] = field(default_factory=dict)


class Events(Mapper):
    name = "events"

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
        key = (query.direction, result if result in QUERY_RESULTS else OTHER)
        hist = acc.query_duration.get(key) or acc.query_duration.setdefault(key, Histogram(QUERY_DURATION_BUCKETS))
        hist.observe(query.total_ms / 1000.0)

    def collect(self, acc: EventsAcc, node: NodeState, out: Scoped) -> None:
        for kind, n in sorted(acc.by_type.items()):
            out.counter(
                "libp2p_events", "Introspection events received, by type (allow-listed, else other).", n, {"type": kind}
            )
        out.counter(
            "libp2p_events_malformed",
            "Events whose content was not a JSON object; still counted by type.",
            acc.malformed,
        )
        for (direction, result), hist in sorted(acc.query_duration.items()):
            out.histogram(
                "libp2p_dht_query_duration_seconds",
                "DHT query duration from query events (totalTimeMs), by direction and result.",
                hist,
                {"direction": direction, "result": result},
            )
