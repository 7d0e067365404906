"""One Event, parsed once for every consumer: its JSON content, and what a DHT query event says.

The hub parses each Event here and hands the same ``EventView`` to the mappers (counts, the query
duration histogram) and to the sinks (query spans), so both agree on what a DHT query is, on its
direction and on which durations are usable numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from exporter.protocol import introspection_pb2 as pb

# docs/protocol.md section 5: the observer's DHT query events and the direction each name means.
DHT_QUERY_EVENTS: dict[str, str] = {"InboundDHTQuery": "inbound", "OutboundDHTQuery": "outbound"}


def finite_number(value: object) -> float | None:
    """A JSON number, or a string holding one (observer samples often send those), as a float.

    Booleans, NaN and infinities are refused: one of them in a histogram's ``_sum`` or a span's
    duration would poison it for good.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class DhtQuery:
    """A DHT query event's content; fields the event lacks are empty (or None for numbers)."""

    direction: str  # inbound | outbound
    total_ms: float | None  # the query's duration; None when missing, negative or not a finite number
    result: str  # as sent: SUCCESS, ERROR, TIMEOUT, PENDING, ... or ""
    query_id: str
    kind: str  # the content's "type": CONTENT, PROVIDER, VALUE
    trigger: str
    target: str  # a peer id, only when the key is one
    steps: int | None
    peers: tuple[str, ...] | None  # None when the event has no peerIds list
    key: str = ""  # the py-libp2p provider's DHT key when it is not a peer id


@dataclass(slots=True)
class EventView:
    """One Event with its JSON content parsed (``content`` is None when it is not a JSON object)."""

    type: str
    ts_ms: int
    content: dict[str, Any] | None
    raw: pb.Event
    dht_query: DhtQuery | None = None

    @property
    def named_dht_query(self) -> bool:
        """The event's type names a DHT query, whatever its content."""
        return self.type in DHT_QUERY_EVENTS


def _text(content: dict[str, Any], key: str) -> str:
    value = content.get(key)
    return "" if value in (None, "") else str(value)


def dht_query_of(name: str, content: dict[str, Any]) -> DhtQuery | None:
    """The query an event describes: one of the DHT query event types, or any event whose content
    carries a query id and a duration (servers that name their events after their own types)."""
    named = DHT_QUERY_EVENTS.get(name)
    if named is None and not ("queryId" in content and "totalTimeMs" in content):
        return None
    if named is not None:
        direction = named
    else:
        sent = str(content.get("direction") or ("INBOUND" if name.startswith("Inbound") else "OUTBOUND"))
        direction = "outbound" if sent.upper() == "OUTBOUND" else "inbound"
    total = finite_number(content.get("totalTimeMs"))
    steps = finite_number(content.get("totalSteps"))
    raw_peers = content.get("peerIds")
    return DhtQuery(
        direction=direction,
        total_ms=total if total is not None and total >= 0 else None,
        result=str(content.get("result") or ""),
        query_id=_text(content, "queryId"),
        kind=_text(content, "type"),
        trigger=_text(content, "trigger"),
        target=_text(content, "targetPeerId"),
        key=_text(content, "key"),
        steps=int(steps) if steps is not None else None,
        peers=tuple(p for p in raw_peers if isinstance(p, str) and p) if isinstance(raw_peers, list) else None,
    )


def parse_event(event: pb.Event) -> EventView:
    """The one parse of an Event's content (a JSON object, or None when it is anything else)."""
    try:
        content = json.loads(event.content) if event.content else {}
        if not isinstance(content, dict):
            content = None
    except (ValueError, RecursionError):
        content = None
    name = event.type.name
    query = dht_query_of(name, content) if content is not None else None
    return EventView(name, event.ts, content, event, query)
