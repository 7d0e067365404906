"""Replay pacing and looping, label bounding, and the synthetic generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.labels import OTHER, Cardinality, LabelGuard
from exporter.model.multiaddr import ip_version_of, transport_of
from exporter.protocol import pb
from exporter.sources import replay as replay_mod
from exporter.sources.capture import write_capture
from tests.support.samples import hub_series as samples
from tests.support.samples import total as total_of


async def test_replay_paces_by_timestamps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.libp2p.trace"
    write_capture(
        path, list(SyntheticNode(connections=3, interval_ms=1000, dht_queries_per_step=0, churn=0).messages(4))
    )
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(replay_mod.asyncio, "sleep", fake_sleep)
    hub = build_hub()
    await replay_mod.replay(hub, path, node="n", speed=4.0)
    assert waits == [0.25] * 4  # 1 s between States at 4x
    waits.clear()
    await replay_mod.replay(build_hub(), path, node="n", speed=0)
    assert all(w == 0 for w in waits)


async def test_loop_keeps_counters_monotonic(fixture_path: Path) -> None:
    hub = build_hub()
    await replay_mod.replay(hub, fixture_path, node="s", speed=0, loop=True, max_passes=1)
    one = samples(hub)
    hub3 = build_hub()
    passes = await replay_mod.replay(hub3, fixture_path, node="s", speed=0, loop=True, max_passes=3)
    three = samples(hub3)
    assert passes == 3
    for key, value in one.items():
        name = key[0]
        if name.endswith("_total") and key in three:
            assert three[key] >= value, key
    assert total_of(samples(hub3), "libp2p_exporter_snapshots_total") == 90  # no looped State was dropped as stale
    assert total_of(samples(hub3), "libp2p_events_total") == 3 * total_of(samples(hub), "libp2p_events_total")


def test_guard_caps_and_folds() -> None:
    guard = LabelGuard("protocol", frozenset({"/known/1"}), cap=2)
    assert [guard(v) for v in ("/known/1", "/a", "/b", "/c", "/a", "/known/1")] == [
        "/known/1",
        "/a",
        "/b",
        OTHER,
        "/a",
        "/known/1",
    ]
    assert guard.folded == 1


def test_hostile_protocols_stay_bounded() -> None:
    """A peer that opens streams with 1000 random protocol ids adds at most cap+1 series."""
    hub = build_hub(Cardinality(protocol_cap=5))
    msg = pb.ServerMessage()
    msg.state.instant_ts = 1
    conn = msg.state.subsystems.connections.add(id=b"c", peer_id="QmEvil")
    for i in range(1000):
        conn.streams.streams.add(id=str(i).encode(), protocol=f"/evil/{i}")
    hub.ingest("n", msg)
    protocols = {dict(lbl)["protocol"] for (name, lbl) in samples(hub) if name == "libp2p_streams"}
    assert len(protocols) == 6 and OTHER in protocols
    assert total_of(samples(hub), "libp2p_exporter_label_values_folded_total", label="protocol") > 0
    for _name, labels in samples(hub):
        assert "QmEvil" not in dict(labels).values()


def test_peer_ids_and_addresses_never_labels() -> None:
    hub = build_hub()
    node = SyntheticNode(connections=20, seed=9)
    for msg in node.messages(5):
        hub.ingest("n", msg)
    peers = {c.peer_id for c in node.conns.values()}
    for _name, labels in samples(hub):
        for key, value in labels:
            if key == "peer_id":  # only the node's own id, on the info metric
                assert value == node.peer_id
            assert value not in peers
            assert "/ip4/" not in value and "/ip6/" not in value


@pytest.mark.parametrize(
    ("addr", "transport", "ipv"),
    [
        ("/ip4/1.2.3.4/tcp/4001", "tcp", "ip4"),
        ("/ip6/::1/udp/4001/quic-v1", "quic-v1", "ip6"),
        ("/ip4/1.2.3.4/udp/4001/quic", "quic", "ip4"),
        ("/dns4/example.org/tcp/443/wss", "wss", "ip4"),
        ("/ip4/1.2.3.4/tcp/443/tls/ws", "wss", "ip4"),
        ("/ip4/1.2.3.4/tcp/80/ws", "ws", "ip4"),
        ("/ip4/1.2.3.4/udp/1/quic-v1/webtransport/certhash/x", "webtransport", "ip4"),
        ("/ip4/1.2.3.4/udp/1/webrtc-direct/certhash/x", "webrtc-direct", "ip4"),
        ("/ip4/1.2.3.4/tcp/1/p2p/QmRelay/p2p-circuit", "circuit", "ip4"),
        ("ip4+tcp", "tcp", "ip4"),
        ("8de3166db28fddb199f05be0acea65772e7a1b289086902160d1060e83dac2fd", "unknown", "unknown"),
        ("", "unknown", "unknown"),
    ],
)
def test_transport_labels(addr: str, transport: str, ipv: str) -> None:
    assert transport_of(addr) == transport
    assert ip_version_of(addr) == ipv


def test_generator_is_deterministic_and_churns() -> None:
    a = [m.SerializeToString() for m in SyntheticNode(connections=30, seed=5).messages(10)]
    b = [m.SerializeToString() for m in SyntheticNode(connections=30, seed=5).messages(10)]
    assert a == b
    hub = build_hub()
    node = SyntheticNode(connections=30, streams_per_conn=4, buckets=6, seed=5)
    for msg in node.messages(30):
        hub.ingest("n", msg)
    assert total_of(samples(hub), "libp2p_swarm_connections_closed_total") > 10
    assert total_of(samples(hub), "libp2p_streams_closed_total") > 10
    assert total_of(samples(hub), "libp2p_dht_routing_table_updates_total", action="removed") > 0
    assert total_of(samples(hub), "libp2p_peers") >= 25
    assert total_of(samples(hub), "libp2p_dht_buckets") == 6


def test_per_node_memory_tracks_the_snapshot_not_history() -> None:
    """After many churning snapshots, what the exporter keeps per node is bounded by the latest State."""
    hub = build_hub()
    node = SyntheticNode(connections=40, streams_per_conn=3, churn=0.3, seed=11, retention_ms=3000)
    for msg in node.messages(200):
        hub.ingest("n", msg)
    state = hub.nodes["n"]
    snap = state.last_step
    assert snap is not None
    n_conns = sum(snap.conn_status.values())  # connections listed in the latest State
    n_streams = sum(snap.stream_status.values())
    lean = state.lean
    assert lean is not None
    assert len(lean.conns) <= n_conns  # one small tuple per listed id, nothing for what left
    assert len(lean.streams) <= n_streams
    assert len(state.accs["traffic"].by_protocol) <= 2 * hub.cardinality.protocol.cap + 64  # label-bounded
    assert total_of(samples(hub), "libp2p_swarm_connections_closed_total") > 500  # lots of history went through


def test_folded_counts_distinct_values_not_lookups() -> None:
    """The fold counter must not depend on how often snapshots or scrapes look a value up."""
    guard = LabelGuard("protocol", frozenset(), cap=1)
    for _ in range(5):
        for v in ("/a", "/b", "/c"):
            guard(v)
    assert guard.folded == 2  # /b and /c, once each
    hub = build_hub(Cardinality(protocol_cap=0))
    msg = pb.ServerMessage()
    msg.state.instant_ts = 1
    conn = msg.state.subsystems.connections.add(id=b"c", peer_id="QmP")
    for i in range(3):
        conn.streams.streams.add(id=str(i).encode(), protocol=f"/x/{i}")
    hub.ingest("n", msg)
    first = total_of(samples(hub), "libp2p_exporter_label_values_folded_total", label="protocol")
    for _ in range(3):
        samples(hub)  # scrapes
    assert total_of(samples(hub), "libp2p_exporter_label_values_folded_total", label="protocol") == first == 3
