"""The event-tracer schema carries go-libp2p-pubsub's package, names, field numbers and enum values."""

from __future__ import annotations

from exporter.protocol import pubsub_trace_pb2 as tpb


def fields(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def test_package_and_top_level() -> None:
    assert tpb.DESCRIPTOR.package == "pubsub.pb"
    assert tpb.TraceEvent.DESCRIPTOR.full_name == "pubsub.pb.TraceEvent"
    assert fields(tpb.TraceEventBatch) == {"batch": 1}
    assert fields(tpb.TraceEvent) == {
        "type": 1,
        "peerID": 2,
        "timestamp": 3,
        "publishMessage": 4,
        "rejectMessage": 5,
        "duplicateMessage": 6,
        "deliverMessage": 7,
        "onNewOutboundStream": 8,
        "onClosedOutboundStream": 9,
        "recvRPC": 10,
        "sendRPC": 11,
        "dropRPC": 12,
        "join": 13,
        "leave": 14,
        "graft": 15,
        "prune": 16,
        "sendRPCCompleted": 17,
    }


def test_enum_values() -> None:
    assert dict(tpb.TraceEvent.Type.items()) == {
        "PUBLISH_MESSAGE": 0,
        "REJECT_MESSAGE": 1,
        "DUPLICATE_MESSAGE": 2,
        "DELIVER_MESSAGE": 3,
        "ON_NEW_OUTBOUND_STREAM": 4,
        "ON_CLOSED_OUTBOUND_STREAM": 5,
        "RECV_RPC": 6,
        "SEND_RPC": 7,
        "DROP_RPC": 8,
        "JOIN": 9,
        "LEAVE": 10,
        "GRAFT": 11,
        "PRUNE": 12,
        "SEND_RPC_COMPLETED": 13,  # go-libp2p-pubsub v0.19.0 writes it after every SEND_RPC
    }


def test_sub_messages() -> None:
    e = tpb.TraceEvent
    assert fields(e.PublishMessage) == {"messageID": 1, "topic": 2}
    assert fields(e.RejectMessage) == {"messageID": 1, "receivedFrom": 2, "reason": 3, "topic": 4}
    assert fields(e.DuplicateMessage) == {"messageID": 1, "receivedFrom": 2, "topic": 3}
    assert fields(e.DeliverMessage) == {"messageID": 1, "topic": 2, "receivedFrom": 3}
    assert fields(e.OnNewOutboundStream) == {"peerID": 1, "proto": 2}
    assert fields(e.OnClosedOutboundStream) == {"peerID": 1}
    assert fields(e.RecvRPC) == {"receivedFrom": 1, "meta": 2}
    assert fields(e.SendRPC) == {"sendTo": 1, "meta": 2}
    assert fields(e.DropRPC) == {"sendTo": 1, "meta": 2}
    assert fields(e.SendRPCCompleted) == {"sendTo": 1, "meta": 2, "writeDurationNanos": 3}
    assert fields(e.Join) == {"topic": 1}
    assert fields(e.Leave) == {"topic": 2}
    assert fields(e.Graft) == {"peerID": 1, "topic": 2}
    assert fields(e.Prune) == {"peerID": 1, "topic": 2}
    assert fields(e.RPCMeta) == {"messages": 1, "subscription": 2, "control": 3}
    assert fields(e.MessageMeta) == {"messageID": 1, "topic": 2}
    assert fields(e.SubMeta) == {"subscribe": 1, "topic": 2}
    assert fields(e.ControlMeta) == {"ihave": 1, "iwant": 2, "graft": 3, "prune": 4, "idontwant": 5}
    assert fields(e.ControlIHaveMeta) == {"topic": 1, "messageIDs": 2}
    assert fields(e.ControlIWantMeta) == {"messageIDs": 1}
    assert fields(e.ControlGraftMeta) == {"topic": 1}
    assert fields(e.ControlPruneMeta) == {"topic": 1, "peers": 2}
    assert fields(e.ControlIDontWantMeta) == {"messageIDs": 1}
