"""Diff and counter semantics on hand-built State sequences."""

from __future__ import annotations

import logging

from exporter.app.runtime import build_hub
from exporter.pipeline.hub import Hub
from exporter.protocol import pb
from tests.support import samples
from tests.support.reference import HubCollector
from tests.support.samples import hub_series

T0 = 1_700_000_000_000


def state(ts: int, conns: list[dict], traffic: tuple[int, int] | None = (0, 0), start: int = T0) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    st = msg.state
    st.instant_ts, st.start_ts = ts, start
    if traffic is not None:
        st.traffic.traffic_in.cum_bytes, st.traffic.traffic_out.cum_bytes = traffic
    for c in conns:
        pc = st.subsystems.connections.add(id=c["id"], peer_id=c.get("peer", "Qm" + c["id"].hex()))
        pc.status = c.get("status", pb.ACTIVE)
        pc.timeline.open_ts = c.get("open", T0)
        pc.timeline.upgraded_ts = c.get("upgraded", 0)
        pc.timeline.close_ts = c.get("close", 0)
        pc.endpoints.src_multiaddr = "/ip4/127.0.0.1/tcp/4001"
        pc.endpoints.dst_multiaddr = "/ip4/192.0.2.7/tcp/4001"
        pc.attribs.encryption, pc.attribs.multiplexer = "/noise", "/yamux/1.0.0"
        for s in c.get("streams", []):
            ps = pc.streams.streams.add(id=s["id"], protocol=s.get("protocol", "/ipfs/ping/1.0.0"))
            ps.status = s.get("status", pb.ACTIVE)
            ps.timeline.open_ts = s.get("open", T0)
            ps.timeline.close_ts = s.get("close", 0)
            ps.traffic.traffic_in.cum_bytes = s.get("bytes_in", 0)
            ps.traffic.traffic_out.cum_bytes = s.get("bytes_out", 0)
    return msg


def total(hub: Hub, name: str, **labels: str) -> float:
    return samples.total(hub_series(hub), name, **labels)


def feed(*msgs: pb.ServerMessage) -> Hub:
    hub = build_hub()
    for m in msgs:
        hub.ingest("n", m)
    return hub


C1, C2 = b"\x01", b"\x02"


def test_close_by_status_then_vanish_counts_once() -> None:
    hub = feed(
        state(T0 + 1000, [{"id": C1}, {"id": C2}]),
        state(T0 + 2000, [{"id": C1, "status": pb.CLOSED}, {"id": C2}]),
        state(T0 + 3000, [{"id": C1, "status": pb.CLOSED, "close": T0 + 1500}, {"id": C2}]),
        state(T0 + 4000, [{"id": C2}]),
    )
    assert total(hub, "libp2p_swarm_connections_opened_total") == 2
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1
    # Status CLOSED came first (no close_ts yet): the duration ends at that snapshot's instant.
    assert total(hub, "libp2p_swarm_connection_duration_seconds_sum") == 2.0
    assert total(hub, "libp2p_peers") == 1


def test_close_ts_alone_closes() -> None:
    hub = feed(state(T0 + 1000, [{"id": C1}]), state(T0 + 2000, [{"id": C1, "close": T0 + 1700}]))
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1
    assert total(hub, "libp2p_swarm_connection_duration_seconds_sum") == 1.7


def test_vanish_without_closed_counts_once_at_last_seen() -> None:
    hub = feed(
        state(T0 + 1000, [{"id": C1, "open": T0}]),
        state(T0 + 2000, [{"id": C1, "open": T0}]),
        state(T0 + 3000, []),
        state(T0 + 4000, []),
    )
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1
    assert total(hub, "libp2p_swarm_connection_duration_seconds_sum") == 2.0
    assert total(hub, "libp2p_peers_disconnected_total") == 1


def test_error_status_closes() -> None:
    hub = feed(state(T0 + 1000, [{"id": C1}]), state(T0 + 2000, [{"id": C1, "status": pb.ERROR}]))
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1


def test_already_closed_in_first_snapshot_is_not_counted() -> None:
    hub = feed(
        state(T0 + 1000, [{"id": C1, "status": pb.CLOSED, "close": T0 + 10}, {"id": C2}]),
        state(T0 + 2000, [{"id": C2}]),
    )
    assert total(hub, "libp2p_swarm_connections_opened_total") == 1
    assert total(hub, "libp2p_swarm_connections_closed_total") == 0


def test_open_and_close_between_snapshots_counts_both() -> None:
    hub = feed(state(T0 + 1000, []), state(T0 + 2000, [{"id": C1, "open": T0 + 1200, "close": T0 + 1900}]))
    assert total(hub, "libp2p_swarm_connections_opened_total") == 1
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1


def test_handshake_latency_from_upgraded_ts() -> None:
    hub = feed(state(T0 + 1000, [{"id": C1, "open": T0, "upgraded": T0 + 40}]))
    assert abs(total(hub, "libp2p_swarm_handshake_latency_seconds_sum") - 0.04) < 1e-9
    assert total(hub, "libp2p_swarm_handshake_latency_seconds_count") == 1


def test_no_handshake_latency_when_upgraded_ts_is_unset_or_before_open() -> None:
    # upgraded_ts 0 means "not measured" (proto3): nothing is observed, not a handshake of -open_ts or 0 s.
    hub = feed(
        state(
            T0 + 1000,
            [{"id": C1, "open": T0, "upgraded": 0}, {"id": C2, "open": T0 + 500, "upgraded": T0 + 100}],
        )
    )
    assert total(hub, "libp2p_swarm_connections_opened_total") == 2
    assert total(hub, "libp2p_swarm_handshake_latency_seconds_count") == 0
    assert total(hub, "libp2p_swarm_handshake_latency_seconds_sum") == 0


def test_duplicate_and_out_of_order_snapshots_are_dropped() -> None:
    a = state(T0 + 1000, [{"id": C1}])
    b = state(T0 + 2000, [])
    hub = feed(a, b, b, a)
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1
    assert total(hub, "libp2p_swarm_connections_opened_total") == 1
    assert total(hub, "libp2p_exporter_snapshots_dropped_total", reason="duplicate") == 1
    assert total(hub, "libp2p_exporter_snapshots_dropped_total", reason="out_of_order") == 1
    assert total(hub, "libp2p_exporter_snapshots_total") == 2


def test_stream_bytes_stay_after_close_and_vanish() -> None:
    s1 = {"id": b"s1", "protocol": "/ipfs/ping/1.0.0", "bytes_in": 100, "bytes_out": 10}
    hub = feed(
        state(T0 + 1000, [{"id": C1, "streams": [s1]}]),
        state(T0 + 2000, [{"id": C1, "streams": [{**s1, "bytes_in": 250}]}]),
        state(T0 + 3000, [{"id": C1, "streams": [{**s1, "bytes_in": 300, "status": pb.CLOSED, "close": T0 + 2500}]}]),
        state(T0 + 4000, [{"id": C1, "streams": []}]),
        state(T0 + 5000, [{"id": C1, "streams": [{"id": b"s2", "protocol": "/ipfs/ping/1.0.0", "bytes_in": 5}]}]),
    )
    assert total(hub, "libp2p_protocol_traffic_bytes_total", protocol="/ipfs/ping/1.0.0", direction="in") == 305
    assert total(hub, "libp2p_protocol_traffic_bytes_total", protocol="/ipfs/ping/1.0.0", direction="out") == 10
    assert total(hub, "libp2p_streams_opened_total") == 2
    assert total(hub, "libp2p_streams_closed_total") == 1
    assert total(hub, "libp2p_stream_duration_seconds_sum") == 2.5  # open_ts T0, close_ts T0+2.5s


def test_connection_close_closes_its_streams() -> None:
    s1 = {"id": b"s1"}
    hub = feed(
        state(T0 + 1000, [{"id": C1, "streams": [s1]}]),
        state(T0 + 2000, [{"id": C1, "status": pb.CLOSED, "streams": [s1]}]),
    )
    assert total(hub, "libp2p_streams_closed_total") == 1


def test_node_restart_never_goes_backwards() -> None:
    hub = feed(
        state(T0 + 1000, [{"id": C1}], traffic=(1000, 500)),
        state(T0 + 2000, [{"id": C1}], traffic=(1500, 700)),
        # Restart: new start_ts, counters from zero, connection ids reused for a new connection.
        state(T0 + 9000, [{"id": C1, "open": T0 + 8500}], traffic=(200, 100), start=T0 + 8000),
        state(T0 + 10000, [{"id": C1, "open": T0 + 8500}], traffic=(400, 150), start=T0 + 8000),
    )
    assert total(hub, "libp2p_traffic_bytes_total", direction="in") == 1500 + 400
    assert total(hub, "libp2p_traffic_bytes_total", direction="out") == 700 + 150
    assert total(hub, "libp2p_swarm_connections_opened_total") == 2  # the old C1 closed, a new C1 opened
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1
    assert total(hub, "libp2p_exporter_node_restarts_total") == 1


def test_new_peer_id_is_a_restart() -> None:
    rt = pb.ServerMessage()
    rt.runtime.peer_id = "QmA"
    rt2 = pb.ServerMessage()
    rt2.runtime.peer_id = "QmB"
    hub = feed(rt, state(T0 + 1000, [{"id": C1}]), rt2, state(T0 + 2000, [{"id": C1}]))
    assert total(hub, "libp2p_exporter_node_restarts_total") == 1
    assert total(hub, "libp2p_swarm_connections_opened_total") == 2


def test_peer_churn_counts_peers_not_connections() -> None:
    both = [{"id": C1, "peer": "QmP"}, {"id": C2, "peer": "QmP"}]
    hub = feed(state(T0 + 1000, both), state(T0 + 2000, both[:1]), state(T0 + 3000, []))
    assert total(hub, "libp2p_peers_connected_total") == 1
    assert total(hub, "libp2p_peers_disconnected_total") == 1
    assert total(hub, "libp2p_swarm_connections_closed_total") == 2


def test_dht_routing_table_updates() -> None:
    def dht_state(ts: int, peers: dict[str, int]) -> pb.ServerMessage:
        msg = state(ts, [])
        bucket = msg.state.subsystems.dht.buckets.add(cpl=3)
        for p, status in peers.items():
            bucket.peers.add(peer_id=p, status=status)
        return msg

    A, M, C = pb.DHT.PeerInDHT.ACTIVE, pb.DHT.PeerInDHT.MISSING, pb.DHT.PeerInDHT.CANDIDATE
    hub = feed(dht_state(T0 + 1000, {"a": A, "b": A, "c": C}), dht_state(T0 + 2000, {"a": M, "c": A, "d": A}))
    assert total(hub, "libp2p_dht_routing_table_updates_total", action="added") == 2 + 2  # a,b then c,d
    assert total(hub, "libp2p_dht_routing_table_updates_total", action="removed") == 1  # b
    assert total(hub, "libp2p_dht_routing_table_updates_total", action="status_changed") == 2  # a, c
    assert total(hub, "libp2p_dht_bucket_peers", cpl="3", status="missing") == 1


def test_unknown_notice_kind_is_counted_not_raised() -> None:
    """proto3 enums are open: a server may send a ServerNotice kind this schema does not name."""
    known, unknown, other = pb.ServerMessage(), pb.ServerMessage(), pb.ServerMessage()
    known.notice.kind = pb.ServerNotice.DISCARDING_EVENTS
    unknown.notice.kind = 5
    other.notice.kind = 77
    hub = feed(known, unknown, other, state(T0 + 1000, [{"id": C1}]))
    assert total(hub, "libp2p_exporter_notices_total", kind="discarding_events") == 1
    assert total(hub, "libp2p_exporter_notices_total", kind="unknown") == 2
    assert total(hub, "libp2p_exporter_snapshots_total") == 1


def test_dht_labels_stay_bounded_and_unique() -> None:
    """Unknown peer statuses (open proto3 enum) share one series; cpls beyond 256 fold into other."""
    msg = state(T0 + 1000, [])
    bucket = msg.state.subsystems.dht.buckets.add(cpl=3)
    bucket.peers.add(peer_id="a", status=5)
    bucket.peers.add(peer_id="b", status=6)
    bucket.peers.add(peer_id="c", status=pb.DHT.PeerInDHT.ACTIVE)
    for i in range(1000):
        msg.state.subsystems.dht.buckets.add(cpl=4_000_000_000 - i)
    hub = feed(msg)
    got = [
        (s.name, tuple(sorted(s.labels.items())))
        for fam in HubCollector(hub).collect()
        for s in fam.samples
        if s.name in ("libp2p_dht_bucket_peers", "libp2p_dht_peers")
    ]
    assert len(got) == len(set(got))  # no series twice in one scrape
    assert total(hub, "libp2p_dht_peers", status="unknown") == 2
    assert total(hub, "libp2p_dht_bucket_peers", cpl="3", status="unknown") == 2
    assert total(hub, "libp2p_dht_bucket_peers", cpl="3", status="active") == 1
    cpls = {dict(lbl)["cpl"] for name, lbl in got if name == "libp2p_dht_bucket_peers"}
    assert cpls == {"3", "other"}
    assert total(hub, "libp2p_dht_buckets") == 1001  # the bucket count itself is not a label


def test_a_clock_that_steps_back_is_followed_after_a_few_states() -> None:
    """One State stamped an hour ahead (a clock step, or a bogus server) must not have every later
    State dropped as out of order until the node's clock catches up."""
    hub = feed(
        state(T0 + 1000, [{"id": C1}]),
        state(T0 + 3_600_000, [{"id": C1}]),  # the clock jumped ahead, then NTP stepped it back
        state(T0 + 2000, [{"id": C1}]),
        state(T0 + 3000, [{"id": C1}]),
        state(T0 + 4000, [{"id": C1}, {"id": C2}]),
        state(T0 + 5000, [{"id": C2}]),
    )
    assert total(hub, "libp2p_exporter_snapshots_dropped_total", reason="out_of_order") == 2
    assert total(hub, "libp2p_exporter_snapshots_total") == 4
    assert total(hub, "libp2p_swarm_connections_opened_total") == 2
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1
    assert total(hub, "libp2p_exporter_last_snapshot_timestamp_seconds") == (T0 + 5000) / 1000
    assert total(hub, "libp2p_exporter_node_restarts_total") == 0


def test_dht_query_durations_refuse_nan_and_infinity() -> None:
    """totalTimeMs comes from the node's JSON: NaN or 1e999 must not poison the histogram's sum."""
    values = ['"250"', '"NaN"', "NaN", "Infinity", "-Infinity", "1e999", '"nope"', "750"]
    msgs = []
    for i, raw in enumerate(values):
        msg = pb.ServerMessage()
        msg.event.type.name = "OutboundDHTQuery"
        msg.event.ts = T0 + i
        msg.event.content = '{"totalTimeMs": ' + raw + ', "result": "SUCCESS"}'
        msgs.append(msg)
    hub = feed(*msgs, state(T0 + 1000, []))  # a node's data is exported once it has a State
    assert total(hub, "libp2p_dht_query_duration_seconds_count") == 2
    assert total(hub, "libp2p_dht_query_duration_seconds_sum") == 1.0
    assert total(hub, "libp2p_events_total", type="OutboundDHTQuery") == len(values)


def test_a_closed_connection_kept_in_later_states_is_counted_by_its_status_alone() -> None:
    """Nodes keep closed connections in their States for the retention period; after the State that
    closed it, such a connection is passed over on its status (lean.py's ``done``): it stays in the
    status gauges with its streams, its close is counted once, and bytes it reports after its close
    no longer move a counter (they were taken when it closed)."""
    s1 = {"id": b"s1", "bytes_in": 100}
    closed = {"id": C1, "status": pb.CLOSED, "close": T0 + 1500}
    msgs = [
        state(T0 + 1000, [{"id": C1, "streams": [s1]}, {"id": C2}]),
        state(T0 + 2000, [{**closed, "streams": [{**s1, "bytes_in": 150}]}, {"id": C2}]),
        state(T0 + 3000, [{**closed, "streams": [{**s1, "bytes_in": 150}]}, {"id": C2}]),
        state(T0 + 4000, [{**closed, "streams": [{**s1, "bytes_in": 999}]}, {"id": C2}]),
    ]
    hub = feed(*msgs)
    assert total(hub, "libp2p_connections", status="closed") == 1
    assert total(hub, "libp2p_connections", status="active") == 1
    assert total(hub, "libp2p_streams", status="closed") == 1
    assert total(hub, "libp2p_swarm_connections_closed_total") == 1
    assert total(hub, "libp2p_streams_closed_total") == 1
    assert total(hub, "libp2p_protocol_traffic_bytes_total", direction="in") == 150
    # Its streams pruned while it stays: the stream gauge follows; reported open again: the gauges follow.
    hub = feed(*msgs, state(T0 + 5000, [{**closed, "streams": []}, {"id": C2}]))
    assert total(hub, "libp2p_streams", status="closed") == 0
    assert total(hub, "libp2p_connections", status="closed") == 1
    hub = feed(*msgs, state(T0 + 5000, [{"id": C1, "streams": [s1]}, {"id": C2}]))
    assert total(hub, "libp2p_connections", status="closed") == 0
    assert total(hub, "libp2p_connections", status="active") == 2


def test_a_node_restarting_in_every_runtime_is_logged_once_then_summarised(caplog) -> None:  # type: ignore[no-untyped-def]
    """Issue 25, item 6: a new peer id in every Runtime is counted every time, logged once per
    5 minutes per node, and what was suppressed is summarised in one line (here: when the node goes)."""
    caplog.set_level(logging.INFO, logger="exporter.pipeline.hub")
    hub = build_hub()
    for i in range(400):
        rt = pb.ServerMessage()
        rt.runtime.peer_id = f"Qm{i}"
        hub.ingest("n", rt)
        hub.ingest("n", state(T0 + 1000 * (i + 1), [{"id": C1}]))
    assert total(hub, "libp2p_exporter_node_restarts_total") == 399  # the first Runtime is no restart
    lines = [r.getMessage() for r in caplog.records]
    assert sum("restart detected" in line for line in lines) == 1, lines[:5]
    hub.remove("n")
    assert caplog.records[-1].getMessage().startswith("node n restart detected: 398 more like this suppressed")


def _config(retention_ms: int) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    msg.response.id = 1
    msg.response.result = pb.CommandResponse.OK
    msg.response.effective_config.retention_period_ms = retention_ms
    msg.response.effective_config.state_snapshot_interval_ms = 1000
    return msg


def test_states_further_apart_than_the_retention_are_counted_as_gaps() -> None:
    """A State more than the node's retention after the previous one may miss connections that
    opened and closed in between; that is counted per node, never guessed at."""
    hub = feed(
        _config(10_000),
        state(T0 + 1000, [{"id": C1}]),
        state(T0 + 11_000, [{"id": C1}]),  # 10 s later: exactly the retention, nothing missed
        state(T0 + 21_001, [{"id": C1}]),  # a millisecond more: a gap
        state(T0 + 22_000, [{"id": C1}]),
    )
    assert total(hub, "libp2p_exporter_retention_gaps_total", node="n") == 1
    # No retention known (no HELLO answer, as in a bare capture): nothing to judge by, no gap counted.
    assert total(feed(state(T0, []), state(T0 + 600_000, [])), "libp2p_exporter_retention_gaps_total", node="n") == 0
