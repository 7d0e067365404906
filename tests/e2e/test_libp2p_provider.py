"""Real py-libp2p hosts on loopback: the State the provider builds matches the hosts' own view.

Five hosts with a Kademlia DHT run in a trio thread (exporter.app.demo_swarm.DemoSwarm with its workload and
churn switched off); each gets an Introspector fed through the trio/asyncio bridge.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

pytest.importorskip("libp2p")

import trio
from libp2p.peer.id import ID

from exporter.app.demo_swarm import ECHO
from exporter.introspector.bridge import BridgeClosed, TrioThread
from exporter.protocol import introspection_pb2 as pb
from tests.support.libp2p_swarm import N, Swarm
from tests.support.procs import until


def host_view(swarm: Swarm, slot: int) -> dict[str, Any]:
    """What the host itself says (runs on the trio thread)."""
    node = swarm.node(slot)
    conns = node.host.get_network().connections
    return {
        "peers": sorted(str(p) for p, cs in conns.items() if cs),
        "conns": sum(len(cs) for cs in conns.values()),
        "protocols": sorted(str(s.get_protocol()) for cs in conns.values() for c in cs for s in c.get_streams()),
        "rt": node.dht.get_routing_table_size(),
        "rt_peers": sorted(str(p) for p in node.dht.routing_table.get_peer_ids()),
    }


def is_peer_id(text: str) -> bool:
    """Base58 of a peer id's multihash: identity (0x00, inline key) or sha2-256 (0x12, 32 bytes)."""
    raw = ID.from_base58(text).to_bytes()
    return (raw[:2] == b"\x12\x20" and len(raw) == 34) or (raw[:1] == b"\x00" and raw[1] == len(raw) - 2)


def active(state: pb.State) -> list[pb.Connection]:
    return [c for c in state.subsystems.connections if c.status == pb.ACTIVE]


async def test_state_matches_each_hosts_own_view(swarm: Swarm) -> None:
    for slot in range(N):
        state = await swarm.intros[slot].fetch_full_state()
        view = await swarm.on_trio(lambda slot=slot: host_view(swarm, slot))
        conns = active(state)
        assert view["conns"] >= 1
        assert len(conns) == view["conns"]
        assert sorted(c.peer_id for c in conns) == view["peers"]
        for c in conns:
            assert c.role in (pb.INITIATOR, pb.RESPONDER)
            assert c.endpoints.dst_multiaddr.startswith("/ip4/127.0.0.1/tcp/")
            assert c.endpoints.src_multiaddr.startswith("/ip4/127.0.0.1/tcp/")
            assert c.transport_id == b"ip4+tcp"
            assert (c.attribs.encryption, c.attribs.multiplexer) == ("/noise", "/yamux/1.0.0")
            assert 0 < c.timeline.open_ts <= state.instant_ts and not c.timeline.close_ts
            # measured around the swarm's upgrader: security and muxer negotiation take time, never 0
            assert c.timeline.open_ts < c.timeline.upgraded_ts <= state.instant_ts
            assert c.traffic.traffic_in.cum_bytes > 0 and c.traffic.traffic_out.cum_bytes > 0
        assert state.traffic.traffic_in.cum_bytes >= sum(c.traffic.traffic_in.cum_bytes for c in conns)
        dht = state.subsystems.dht
        assert dht.enabled and dht.protocol == "/ipfs/kad/1.0.0" and dht.params.k == 20
        in_buckets = sorted(p.peer_id for b in dht.buckets for p in b.peers)
        assert len(in_buckets) == view["rt"] > 0
        assert in_buckets == view["rt_peers"]
        assert all(0 <= b.cpl <= 256 for b in dht.buckets)
        assert state.instant_ts >= state.start_ts > 0


async def test_streams_carry_protocol_direction_and_times(swarm: Swarm) -> None:
    a, b = swarm.node(0), swarm.node(1)
    held: dict[str, Any] = {}

    async def open_and_hold() -> None:
        stream = await a.host.new_stream(b.host.get_id(), [ECHO])
        await stream.write(b"x" * 1000)
        got = b""
        while len(got) < 1000:
            got += await stream.read(1000 - len(got))
        held["stream"] = stream

    await swarm.bridge.run_async(open_and_hold)
    state_a = await swarm.intros[0].fetch_full_state()
    to_b = [c for c in active(state_a) if c.peer_id == b.peer_id]
    assert len(to_b) == 1
    echo = [s for s in to_b[0].streams.streams if s.protocol == ECHO and s.status == pb.ACTIVE]
    assert len(echo) == 1
    assert echo[0].role == pb.INITIATOR and echo[0].timeline.open_ts and not echo[0].timeline.close_ts
    assert echo[0].traffic.traffic_out.cum_bytes >= 1000 and echo[0].traffic.traffic_in.cum_bytes >= 1000
    view = await swarm.on_trio(lambda: host_view(swarm, 0))
    open_protocols = sorted(s.protocol for c in active(state_a) for s in c.streams.streams if s.status == pb.ACTIVE)
    assert open_protocols == view["protocols"]
    # the other side sees the same stream as a responder
    state_b = await swarm.intros[1].fetch_full_state()
    from_a = [c for c in active(state_b) if c.peer_id == a.peer_id]
    assert [s.role for c in from_a for s in c.streams.streams if s.protocol == ECHO and s.status == pb.ACTIVE] == [
        pb.RESPONDER
    ]

    await swarm.bridge.run_async(held["stream"].close)

    async def closed() -> bool:
        st = await swarm.intros[0].fetch_full_state()
        return any(
            s.protocol == ECHO and s.status == pb.CLOSED and s.timeline.close_ts >= s.timeline.open_ts
            for c in st.subsystems.connections
            for s in c.streams.streams
        )

    await until(closed, 10, "the echo stream to show as closed", interval=0.1)


async def test_dht_queries_are_counted_by_result_and_published(swarm: Swarm) -> None:
    events: dict[int, list[pb.ServerMessage]] = {slot: [] for slot in swarm.intros}
    for slot, intro in swarm.intros.items():
        intro.subscribe(events[slot].append)

    def api(slot: int, name: str = "OutboundDHTQuery") -> list[dict[str, Any]]:
        got = [json.loads(m.event.content) for m in events[slot] if m.event.type.name == name]
        return [e for e in got if e["trigger"] == "API"] if name == "OutboundDHTQuery" else got

    async def outgoing(slot: int) -> pb.DHT.QueryGauge:
        return (await swarm.intros[slot].fetch_full_state()).subsystems.dht.outgoing_queries

    # the DHT's own routing-table refreshes (trigger DISCOVERY) may add to the counters meanwhile
    before0, before3 = await outgoing(0), await outgoing(3)
    a, c = swarm.node(0), swarm.node(2)
    found = await swarm.bridge.run_async(a.dht.find_peer, c.host.get_id())
    assert found is not None
    await swarm.bridge.run_async(a.dht.put_value, "test-key", b"value")
    value = await swarm.bridge.run_async(swarm.node(3).dht.get_value, "test-key")
    assert value == b"value"
    missing = await swarm.bridge.run_async(swarm.node(3).dht.get_value, "no-such-key")
    assert missing is None
    after0, after3 = await outgoing(0), await outgoing(3)
    assert after0.success - before0.success >= 2
    assert after3.success - before3.success >= 1 and after3.error - before3.error == 1
    inbound = 0
    for intro in swarm.intros.values():
        inbound += (await intro.fetch_full_state()).subsystems.dht.incoming_queries.success
    assert inbound >= 3

    await until(lambda: _true(len(api(0)) == 2 and len(api(3)) == 2), 5, "the query events", interval=0.1)
    assert [(e["type"], e["result"]) for e in api(0)] == [("PEER", "SUCCESS"), ("VALUE", "SUCCESS")]
    assert api(0)[0]["targetPeerId"] == c.peer_id
    assert [(e["type"], e["result"]) for e in api(3)] == [("VALUE", "SUCCESS"), ("VALUE", "ERROR")]
    assert (api(0)[1]["targetPeerId"], api(0)[1]["key"]) == ("", "test-key")
    keys = {"direction", "peerIds", "queryId", "targetPeerId", "key"}
    keys |= {"totalTimeMs", "totalSteps", "trigger", "type", "result"}
    inbound_events = [e for slot in swarm.intros for e in api(slot, "InboundDHTQuery")]
    assert inbound_events
    assert all(set(e) == keys for slot in swarm.intros for e in api(slot) + api(slot, "InboundDHTQuery"))
    assert {e["type"] for e in inbound_events} <= {"PEER", "VALUE", "PROVIDER", "PING"}
    assert all(e["direction"] == "INBOUND" and len(e["peerIds"]) == 1 for e in inbound_events)
    # targetPeerId holds a peer id or nothing; a record's key (lookups for it are FIND_NODE too) is `key`
    assert any(e["key"] == "test-key" and e["targetPeerId"] == "" for e in inbound_events)
    for e in inbound_events:
        assert not (e["targetPeerId"] and e["key"])
        assert not e["targetPeerId"] or is_peer_id(e["targetPeerId"])
    runtime = await swarm.intros[0].fetch_runtime()
    declared = {et.name: {p.name for p in et.property_types} for et in runtime.event_types}
    assert declared["InboundDHTQuery"] == declared["OutboundDHTQuery"] == keys


async def test_forced_disconnect_is_one_close_and_one_event(swarm: Swarm) -> None:
    events: list[pb.ServerMessage] = []
    swarm.intros[0].subscribe(events.append)
    a, b = swarm.node(0), swarm.node(1)
    before = await swarm.intros[0].fetch_full_state()
    assert [c.peer_id for c in active(before)].count(b.peer_id) == 1
    await swarm.bridge.run_async(a.host.disconnect, b.host.get_id())

    async def closed_once() -> bool:
        st = await swarm.intros[0].fetch_full_state()
        to_b = [c for c in st.subsystems.connections if c.peer_id == b.peer_id]
        return len(to_b) == 1 and to_b[0].status == pb.CLOSED

    await until(closed_once, 10, "the connection to show as CLOSED", interval=0.1)
    for _ in range(3):  # it stays a single CLOSED entry, not a second close
        st = await swarm.intros[0].fetch_full_state()
        to_b = [c for c in st.subsystems.connections if c.peer_id == b.peer_id]
        assert len(to_b) == 1 and to_b[0].status == pb.CLOSED
        assert to_b[0].timeline.close_ts >= to_b[0].timeline.open_ts
        assert all(s.status == pb.CLOSED for s in to_b[0].streams.streams)
    view = await swarm.on_trio(lambda: host_view(swarm, 0))
    assert b.peer_id not in view["peers"]
    disc = [json.loads(m.event.content) for m in events if m.event.type.name == "PeerDisconnecting"]
    assert [d["peerId"] for d in disc] == [b.peer_id]
    assert disc[0]["age"] >= 0 and disc[0]["transport"] == "ip4+tcp"


async def test_a_stalled_trio_loop_costs_the_snapshot_parts_not_the_endpoint(swarm: Swarm) -> None:
    intro = swarm.intros[0]
    intro.provider_timeout_s = 0.3
    # Trio stays blocked from when the blocker starts until the checks are done, however slow the
    # machine: a fixed-length block could end before a loaded machine got to fetch the State.
    started, release = threading.Event(), threading.Event()
    await swarm.bridge.run(lambda: swarm.swarm.nursery.start_soon(_block_trio, started, release))
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, started.wait, 10.0), "trio never ran the blocker"
        state = await intro.fetch_full_state()  # trio is blocked: every trio-backed part times out
        assert not state.subsystems.connections and not state.subsystems.HasField("dht")
        assert intro.faults[("connections:py-libp2p", "timeout")] == 1
        runtime = await intro.fetch_runtime()  # static parts still answer
        assert runtime.implementation == "py-libp2p" and runtime.peer_id == swarm.node(0).peer_id
        names = {et.name for et in runtime.event_types}
        assert {"PeerConnecting", "PeerDisconnecting", "InboundDHTQuery", "OutboundDHTQuery"} <= names
    finally:
        release.set()
    intro.provider_timeout_s = 5.0

    async def back() -> bool:
        return bool((await intro.fetch_full_state()).subsystems.connections)

    await until(back, 10, "snapshots to recover", interval=0.1)


async def test_bridge_reports_a_finished_trio_loop() -> None:
    async def main(task_status: Any) -> None:
        task_status.started(None)

    thread = TrioThread(main)
    await thread.start()
    bridge = thread.bridge
    assert bridge is not None
    assert await thread.stop() is None
    with pytest.raises(BridgeClosed):
        await bridge.run(lambda: 1)


async def _block_trio(started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait(10.0)  # deliberately blocks the trio thread (never for good)
    await trio.sleep(0)


def _true(value: bool) -> bool:
    return value


def test_introspect_host_serves_a_trio_program() -> None:
    """docs/producer.md's recipe: a trio program gets an Endpoint for its host with one context manager."""
    import aiohttp
    import multiaddr
    from libp2p import new_host
    from libp2p.peer.peerinfo import PeerInfo

    from exporter.introspector.libp2p_provider import introspect_host
    from exporter.protocol.commands import command
    from exporter.protocol.framing import decode_segments

    CMD = pb.ClientCommand

    async def client(url: str) -> list[pb.ServerMessage]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            out = []
            for cid, cmd, src in (
                (1, CMD.HELLO, CMD.STATE),
                (2, CMD.REQUEST, CMD.RUNTIME),
                (3, CMD.REQUEST, CMD.STATE),
            ):
                await ws.send_bytes(command(cid, cmd, src))
                frame = await asyncio.wait_for(ws.receive(), 10)
                out.extend(decode_segments(frame.data).messages)
            return out

    async def main() -> tuple[list[pb.ServerMessage], str, str]:
        a, b = new_host(), new_host()
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        async with a.run(listen), b.run(listen), introspect_host(a) as endpoint:
            await b.connect(PeerInfo(a.get_id(), a.get_addrs()))
            with trio.fail_after(10):  # the dialled side registers the connection a moment later
                while not a.get_network().connections:
                    await trio.sleep(0.01)
            msgs = await trio.to_thread.run_sync(asyncio.run, client(endpoint.listen_addrs()[0]))
            return msgs, str(a.get_id()), str(b.get_id())

    msgs, a_id, b_id = trio.run(main)
    hello, runtime, state = msgs
    assert hello.response.result == pb.CommandResponse.OK
    assert runtime.runtime.peer_id == a_id and runtime.runtime.implementation == "py-libp2p"
    assert [c.peer_id for c in active(state.state)] == [b_id]
    assert not state.state.subsystems.HasField("dht")  # no DHT given: the part is absent, not empty


async def test_closed_streams_are_bounded_newest_kept(swarm: Swarm) -> None:
    a, b = swarm.node(0), swarm.node(1)
    a.introspection.max_closed_streams = 5

    async def short_streams() -> None:
        for _ in range(12):
            stream = await a.host.new_stream(b.host.get_id(), [ECHO])
            await stream.write(b"ping")
            await stream.read(4)
            await stream.close()

    await swarm.bridge.run_async(short_streams)

    async def bounded() -> bool:
        st = await swarm.intros[0].fetch_full_state()
        to_b = [c for c in active(st) if c.peer_id == b.peer_id]
        closed = [s for c in to_b for s in c.streams.streams if s.status == pb.CLOSED]
        return len(closed) == 5 and all(s.protocol == ECHO for s in closed)

    await until(bounded, 10, "five newest closed echo streams", interval=0.1)


async def test_a_node_that_leaves_stops_listening_and_is_freed(swarm: Swarm) -> None:
    """Churn 'leave' stops the node for good: its TCP port closes and the host can be collected.

    py-libp2p's TCP listener runs in a trio *system* task that cancelling the host does not reach; a
    departed node used to keep its port open and its whole host (connections, streams, provider
    records) in memory, so a long demo grew without bound.
    """
    import gc
    import socket
    import weakref

    leaving = swarm.node(4)
    port = int(str(leaving.host.get_addrs()[0]).split("/tcp/")[1].split("/")[0])
    host_ref = weakref.ref(leaving.host)
    await swarm.bridge.run(leaving.scope.cancel)
    del leaving
    swarm.intros.pop(4).unregister_all()  # the test's own reference to the node's providers

    async def gone() -> bool:
        if 4 in swarm.swarm.nodes:
            return False
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", port)) != 0

    await until(gone, 10, "the departed node's port to close", interval=0.1)

    async def freed() -> bool:
        await swarm.bridge.run(gc.collect)
        return host_ref() is None

    await until(freed, 15, "the departed host to be garbage collected", interval=0.1)


def _kad(kind: int, key: bytes) -> bytes:
    """One varint-framed Kademlia request, as it arrives on an inbound DHT stream."""
    from libp2p.kad_dht.pb.kademlia_pb2 import Message

    body = Message(type=kind, key=key).SerializeToString()
    assert len(body) < 128
    return bytes([len(body)]) + body


def test_inbound_dht_key_is_a_target_peer_only_when_it_is_a_peer_id() -> None:
    import base58
    from libp2p.crypto.ed25519 import create_new_key_pair

    from exporter.introspector.libp2p_provider import _kad_request

    peer = ID.from_pubkey(create_new_key_pair().public_key)  # identity multihash (ed25519)
    sha_peer = ID(bytes([0x12, 0x20]) + bytes(range(32)))
    find_node, get_value, get_providers = 4, 1, 3
    assert _kad_request(_kad(find_node, peer.to_bytes())) == ("PEER", str(peer), "")
    assert _kad_request(_kad(find_node, sha_peer.to_bytes())) == ("PEER", str(sha_peer), "")
    # the example: a lookup for the record "demo-14dd2f48" was reported as peer 9N1U9urXngomaDhgco
    assert _kad_request(_kad(find_node, b"demo-14dd2f48")) == ("PEER", "", "demo-14dd2f48")
    assert _kad_request(_kad(get_value, b"/pk/" + peer.to_bytes()))[1] == ""
    # a content hash asked for providers is a key, never a peer, shown in base58
    assert _kad_request(_kad(get_providers, sha_peer.to_bytes())) == ("PROVIDER", "", str(sha_peer))
    lying = b"\x00\x05abc"  # an identity multihash whose length is wrong: not a peer id
    assert _kad_request(_kad(find_node, lying)) == ("PEER", "", base58.b58encode(lying).decode())
    assert _kad_request(b"\xff\xff garbage") == ("", "", "")
