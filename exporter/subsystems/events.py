"""Events: counted by type (bounded), and DHT query events turned into a duration histogram."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from exporter.families import Scoped
from exporter.histogram import QUERY_DURATION_BUCKETS, Histogram
from exporter.labels import OTHER
from exporter.node import EventView, NodeState
from exporter.subsystems.base import Subsystem

DHT_QUERY_EVENTS = {"InboundDHTQuery": "inbound", "OutboundDHTQuery": "outbound"}
QUERY_RESULTS = frozenset({"success", "error", "timeout", "pending"})


@dataclass
class EventsAcc:
    by_type: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    query_duration: dict[tuple[str, str], Histogram] = field(default_factory=dict)


def _number(value: object) -> float | None:
    """Observer samples often send numbers as strings. NaN and infinities are refused: one of them
    would make the histogram's _sum NaN or Inf for good."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


class Events(Subsystem):
    name = "events"

    def new_accumulator(self) -> EventsAcc:
        return EventsAcc()

    def on_event(self, acc: EventsAcc, event: EventView) -> None:
        acc.by_type[self.card.event_type(event.type or "unknown")] += 1
        if event.content is None:
            acc.malformed += 1
            return
        direction = DHT_QUERY_EVENTS.get(event.type)
        if direction is None:
            return
        millis = _number(event.content.get("totalTimeMs"))
        if millis is None or millis < 0:
            return
        result = str(event.content.get("result", "")).lower()
        key = (direction, result if result in QUERY_RESULTS else OTHER)
        hist = acc.query_duration.get(key) or acc.query_duration.setdefault(key, Histogram(QUERY_DURATION_BUCKETS))
        hist.observe(millis / 1000.0)

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
