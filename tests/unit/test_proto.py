"""The schema matches docs/protocol.md (the generated module's freshness: tests/integration/test_generated_proto.py)."""

from __future__ import annotations

from pathlib import Path

from exporter.protocol import pb

REPO = Path(__file__).resolve().parents[2]


def fields(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def test_generated_for_protobuf_6_31() -> None:
    for name in ("introspection_pb2.py", "pubsub_trace_pb2.py"):
        text = (REPO / "exporter" / "protocol" / name).read_text()
        assert "Protobuf Python Version: 6.31.1" in text  # runs on 6.31.1 .. 7.x runtimes


def test_package_and_field_numbers() -> None:
    assert pb.DESCRIPTOR.package == "introspection"
    assert fields(pb.Connection) == {
        "id": 1,
        "peer_id": 2,
        "status": 3,
        "transport_id": 4,
        "endpoints": 5,
        "timeline": 6,
        "role": 7,
        "traffic": 8,
        "attribs": 9,
        "latency_ns": 10,
        "streams": 11,
        "conn_id": 16,
        "conn": 17,
        "user_provided_tags": 99,
    }
    assert fields(pb.Stream) == {
        "id": 1,
        "protocol": 2,
        "role": 3,
        "traffic": 4,
        "conn": 5,
        "timeline": 6,
        "status": 7,
        "latency_ns": 16,
        "user_provided_tags": 99,
    }
    assert fields(pb.Runtime) == {"implementation": 1, "version": 2, "platform": 3, "peer_id": 4, "event_types": 7}
    assert fields(pb.State) == {
        "subsystems": 1,
        "traffic": 2,
        "instant_ts": 3,
        "start_ts": 4,
        "snapshot_duration_ms": 5,
    }
    assert fields(pb.ServerMessage) == {"version": 1, "state": 2, "runtime": 3, "event": 4, "response": 5, "notice": 6}
    assert fields(pb.ClientCommand) == {"version": 1, "id": 2, "command": 3, "source": 4, "config": 5}
    assert fields(pb.DHT) == {
        "protocol": 1,
        "enabled": 2,
        "start_ts": 3,
        "params": 4,
        "buckets": 5,
        "incoming_queries": 6,
        "outgoing_queries": 7,
    }
    assert fields(pb.DHT.PeerInDHT) == {"peer_id": 1, "status": 2, "age_in_bucket": 3}
    assert fields(pb.SlidingCounter)["over_24hr"] == 10


def test_reserved_range_and_oneofs() -> None:
    desc = pb.Connection.DESCRIPTOR
    proto = desc.file.serialized_pb
    assert proto  # the descriptor carries the reserved range:
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FileDescriptorProto.FromString(proto)
    conn = next(m for m in fdp.message_type if m.name == "Connection")
    assert [(r.start, r.end) for r in conn.reserved_range] == [(12, 16)]  # 12 to 15 inclusive
    assert [f.name for f in desc.oneofs_by_name["relayed_over"].fields] == ["conn_id", "conn"]
    assert [f.name for f in pb.Stream.ConnectionRef.DESCRIPTOR.oneofs_by_name["connection"].fields] == [
        "conn",
        "conn_id",
    ]


def test_enum_values() -> None:
    assert dict(pb.Status.items()) == {"ACTIVE": 0, "CLOSED": 1, "OPENING": 2, "CLOSING": 3, "ERROR": 4}
    assert dict(pb.Role.items()) == {"INITIATOR": 0, "RESPONDER": 1}
    assert dict(pb.ClientCommand.Command.items()) == {
        "HELLO": 0,
        "REQUEST": 1,
        "PUSH_ENABLE": 2,
        "PUSH_DISABLE": 3,
        "PUSH_PAUSE": 4,
        "PUSH_RESUME": 5,
        "UPDATE_CONFIG": 7,
    }
    assert dict(pb.ClientCommand.Source.items()) == {"STATE": 0, "RUNTIME": 1, "EVENTS": 2}
    assert dict(pb.EventType.EventProperty.PropertyType.items()) == {
        "STRING": 0,
        "NUMBER": 1,
        "TIME": 10,
        "PEERID": 11,
        "MULTIADDR": 12,
        "JSON": 90,
    }
    assert dict(pb.DHT.PeerInDHT.Status.items()) == {"ACTIVE": 0, "MISSING": 1, "REJECTED": 2, "CANDIDATE": 3}
    assert dict(pb.CommandResponse.Result.items()) == {"OK": 0, "ERR": 1}
    assert dict(pb.ServerNotice.Kind.items()) == {"DISCARDING_EVENTS": 0}
