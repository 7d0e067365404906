"""The pubsub metrics mapper on synthetic traces: counts, mesh, propagation, and every bound."""

from __future__ import annotations

from exporter.mappers.pubsub import PubsubMetrics, b58
from exporter.protocol.pubsub_codec import TraceEvent
from tests.support.reference import MetricsWriter

T = TraceEvent.Type
A, B, C = b"\x00\x24" + b"a" * 32, b"\x00\x24" + b"b" * 32, b"\x00\x24" + b"c" * 32
S = 1_000_000_000


def ev(kind: int, peer: bytes, ts: int, **sub: object) -> TraceEvent:
    e = TraceEvent(type=kind, peerID=peer, timestamp=ts)
    field = {
        T.PUBLISH_MESSAGE: "publishMessage",
        T.DELIVER_MESSAGE: "deliverMessage",
        T.JOIN: "join",
        T.LEAVE: "leave",
        T.GRAFT: "graft",
        T.PRUNE: "prune",
        T.REJECT_MESSAGE: "rejectMessage",
        T.DUPLICATE_MESSAGE: "duplicateMessage",
        T.ON_NEW_OUTBOUND_STREAM: "onNewOutboundStream",
        T.ON_CLOSED_OUTBOUND_STREAM: "onClosedOutboundStream",
        T.SEND_RPC: "sendRPC",
    }[kind]
    getattr(e, field).SetInParent()
    for k, v in sub.items():
        setattr(getattr(e, field), k, v)
    return e


def samples(m: PubsubMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = MetricsWriter()
    m.collect_into(out)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in out.metrics() for s in f.samples}


def value(m: PubsubMetrics, name: str, **labels: str) -> float:
    return samples(m)[(name, tuple(sorted(labels.items())))]


def test_b58_matches_peer_id_text() -> None:
    import pytest

    ids = pytest.importorskip("libp2p.peer.id")
    raw = bytes.fromhex("002408011220") + bytes(range(32))
    assert b58(raw) == ids.ID(raw).to_base58() and b58(b"\x00\x00\x01") == "112"


def test_counts_mesh_and_peers() -> None:
    m = PubsubMetrics(names={b58(A): "node-a"})
    m.ingest_all(
        [
            ev(T.JOIN, A, 1, topic="t"),
            ev(T.ON_NEW_OUTBOUND_STREAM, A, 2, peerID=B, proto="/meshsub/1.1.0"),
            ev(T.ON_NEW_OUTBOUND_STREAM, A, 2, peerID=C, proto="/meshsub/1.1.0"),
            ev(T.GRAFT, A, 3, peerID=B, topic="t"),
            ev(T.GRAFT, A, 3, peerID=C, topic="t"),
            ev(T.PRUNE, A, 4, peerID=C, topic="t"),
            ev(T.GRAFT, A, 4, peerID=C, topic="t"),
            ev(T.ON_CLOSED_OUTBOUND_STREAM, A, 5, peerID=B),
            ev(T.REJECT_MESSAGE, A, 6, messageID=b"m", topic="t", reason="validation failed"),
            ev(T.REJECT_MESSAGE, A, 6, messageID=b"m", topic="t", reason="made up " * 3),
            ev(T.DUPLICATE_MESSAGE, A, 7, messageID=b"m", topic="t"),
        ]
    )
    assert value(m, "libp2p_pubsub_mesh_peer_counts", node="node-a", topic="t") == 1  # C only: B left
    assert value(m, "libp2p_pubsub_mesh_grafts_total", node="node-a", topic="t") == 3
    assert value(m, "libp2p_pubsub_mesh_prunes_total", node="node-a", topic="t") == 1
    assert value(m, "libp2p_pubsub_peers_per_protocol", node="node-a", protocol="/meshsub/1.1.0") == 1
    assert value(m, "libp2p_pubsub_rejected_messages_total", node="node-a", topic="t", reason="validation failed") == 1
    assert value(m, "libp2p_pubsub_duplicate_messages_total", node="node-a", topic="t") == 1
    m.ingest(ev(T.LEAVE, A, 8, topic="t"))
    assert ("libp2p_pubsub_topic_joined", (("node", "node-a"), ("topic", "t"))) not in samples(m)


def test_propagation_waits_for_a_late_publish_and_counts_skew() -> None:
    m = PubsubMetrics()
    m.ingest_all(
        [
            ev(T.JOIN, A, 0, topic="t"),
            ev(T.JOIN, B, 0, topic="t"),
            ev(T.JOIN, C, 0, topic="t"),
            ev(T.DELIVER_MESSAGE, B, 10 * S + S // 4, messageID=b"m1", topic="t", receivedFrom=A),  # before its publish
            ev(T.PUBLISH_MESSAGE, A, 10 * S, messageID=b"m1", topic="t"),
            ev(T.DELIVER_MESSAGE, A, 10 * S, messageID=b"m1", topic="t", receivedFrom=A),  # origin: no sample
            ev(T.DELIVER_MESSAGE, C, 10 * S - 5, messageID=b"m1", topic="t", receivedFrom=B),  # clock skew
        ]
    )
    assert value(m, "libp2p_pubsub_propagation_delay_seconds_count", topic="t") == 2
    assert value(m, "libp2p_pubsub_propagation_delay_seconds_sum", topic="t") == 0.25
    assert value(m, "libp2p_pubsub_propagation_clock_skew_total") == 1
    m.flush()
    assert value(m, "libp2p_pubsub_message_reach_ratio_bucket", topic="t", le="0.9") == 0
    assert value(m, "libp2p_pubsub_message_reach_ratio_count", topic="t") == 1  # 3 of 3 joined nodes


def test_window_is_bounded_by_cap_and_ttl() -> None:
    now = [0.0]
    m = PubsubMetrics(max_messages=100, ttl_s=10, clock=lambda: now[0])
    m.ingest_all(ev(T.DELIVER_MESSAGE, B, i, messageID=i.to_bytes(4, "big"), topic="t") for i in range(250))
    assert value(m, "libp2p_pubsub_tracked_messages") == 100
    assert value(m, "libp2p_pubsub_messages_evicted_total") == 150
    now[0] = 11.0
    assert value(m, "libp2p_pubsub_tracked_messages") == 0
    assert value(m, "libp2p_pubsub_messages_unmatched_total") == 250


def test_topics_reasons_and_nodes_are_capped() -> None:
    m = PubsubMetrics(topics={"blocks"}, topic_cap=2, node_cap=3)
    for i in range(50):
        peer = b"\x00\x24" + i.to_bytes(32, "big")
        m.ingest(ev(T.PUBLISH_MESSAGE, peer, i, messageID=bytes([i]), topic=f"spam-{i}"))
        m.ingest(ev(T.REJECT_MESSAGE, peer, i, messageID=bytes([i]), topic="blocks", reason=f"why-{i}"))
    names = samples(m)
    topics = {dict(k[1]).get("topic") for k in names if "topic" in dict(k[1])}
    nodes = {dict(k[1])["node"] for k in names if "node" in dict(k[1])}
    reasons = {dict(k[1]).get("reason") for k in names if "reason" in dict(k[1])}
    assert topics == {"blocks", "spam-0", "spam-1", "other"}
    assert len(nodes) == 4 and "other" in nodes
    assert len(reasons) <= 9 and "other" in reasons
    assert value(m, "libp2p_exporter_label_values_folded_total", label="topic") == 48


def test_a_node_gone_keeps_its_counters_but_not_its_mesh() -> None:
    m = PubsubMetrics(names={b58(A): "node-a"})
    m.ingest_all(
        [
            ev(T.JOIN, A, 1, topic="t"),
            ev(T.GRAFT, A, 2, peerID=B, topic="t"),
            ev(T.ON_NEW_OUTBOUND_STREAM, A, 2, peerID=B, proto="/meshsub/1.1.0"),
            ev(T.PUBLISH_MESSAGE, A, 3, messageID=b"m", topic="t"),
        ]
    )
    m.node_gone(b58(A))
    got = samples(m)
    assert ("libp2p_pubsub_mesh_peer_counts", (("node", "node-a"), ("topic", "t"))) not in got
    assert not [k for k in got if k[0] == "libp2p_pubsub_peers_per_protocol"]
    assert value(m, "libp2p_pubsub_topic_msg_published_total", node="node-a", topic="t") == 1
    m.node_gone("not base58 0OIl")  # unknown or malformed: nothing happens
