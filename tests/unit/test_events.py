"""One parse of an Event for metrics and spans alike: content, DHT query fields, finite numbers."""

from __future__ import annotations

import json
import math

import pytest

from exporter.pipeline.events import DHT_QUERY_EVENTS, finite_number, parse_event
from exporter.protocol import introspection_pb2 as pb


def event(name: str, content: object, ts: int = 1_700_000_000_000) -> pb.Event:
    text = content if isinstance(content, str) else json.dumps(content)
    return pb.Event(type=pb.EventType(name=name), ts=ts, content=text)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (250, 250.0),
        ("250", 250.0),
        (" 1.5 ", 1.5),
        (-3, -3.0),
        (True, None),
        (None, None),
        ([1], None),
        ("abc", None),
        (math.nan, None),
        ("NaN", None),
        ("-Infinity", None),
        (10**400, None),
    ],
)
def test_finite_number(value: object, want: float | None) -> None:
    assert finite_number(value) == want


def test_named_query_event() -> None:
    view = parse_event(
        event(
            "InboundDHTQuery",
            {
                "direction": "OUTBOUND",  # the type name decides: an InboundDHTQuery is inbound
                "queryId": 7,
                "totalTimeMs": "12.5",
                "totalSteps": "3",
                "result": "SUCCESS",
                "type": "VALUE",
                "trigger": "API",
                "targetPeerId": "QmT",
                "peerIds": ["QmA", None, "", 5, "QmB"],
            },
        )
    )
    q = view.dht_query
    assert q is not None and view.named_dht_query
    assert (q.direction, q.total_ms, q.steps, q.result) == ("inbound", 12.5, 3, "SUCCESS")
    assert (q.query_id, q.kind, q.trigger, q.target, q.peers) == ("7", "VALUE", "API", "QmT", ("QmA", "QmB"))


def test_query_event_under_another_name_and_unusable_fields() -> None:
    q = parse_event(event("EvtDHTQuery", {"queryId": "q", "totalTimeMs": -1, "direction": "inbound"})).dht_query
    assert q is not None and (q.direction, q.total_ms, q.steps, q.peers) == ("inbound", None, None, None)
    q = parse_event(event("EvtDHTQuery", {"queryId": "q", "totalTimeMs": 5})).dht_query
    assert q is not None and q.direction == "outbound"  # no direction, no Inbound prefix
    assert parse_event(event("PeerConnecting", {"peerId": "QmA"})).dht_query is None


def test_content_that_is_not_an_object() -> None:
    for text in ("{not json", "[1, 2]", '"text"', "[" * 100_000):
        view = parse_event(event("OutboundDHTQuery", text))
        assert view.content is None and view.dht_query is None and view.named_dht_query
    view = parse_event(pb.Event(type=pb.EventType(name="X"), ts=1))
    assert view.content == {} and view.dht_query is None


def test_the_table_names_the_protocol_events() -> None:
    assert DHT_QUERY_EVENTS == {"InboundDHTQuery": "inbound", "OutboundDHTQuery": "outbound"}
