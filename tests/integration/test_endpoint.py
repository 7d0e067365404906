"""The Endpoint against docs/protocol.md, byte by byte, with a minimal client written here.

The exporter's own WebSocket client is tested against the Endpoint in test_introspector_wire.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest

from exporter.app.runtime import build_hub
from exporter.introspector import Endpoint, Introspector, event_type
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.commands import command
from exporter.protocol.framing import WIRE_HEADER, decode_segments, fnv1a32
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer
from tests.support.live import FAST
from tests.support.procs import until

CMD = pb.ClientCommand
# docs/protocol.md §2, the worked example: HELLO reply OK, id 1, retention 120000 ms, interval 1000 ms.
HELLO_REPLY = bytes.fromhex("01000000 a65a0405 11000000 0a020801 2a0b0801 220708c0 a90710e8 07".replace(" ", ""))


def make_introspector() -> Introspector:
    intro = Introspector(name="test", provider_timeout_s=0.5)
    intro.register("runtime", lambda: pb.Runtime(implementation="test-impl", version="1", peer_id="12D3KooWtest"))
    intro.register("events", lambda: [event_type("PeerConnecting", {"peerId": pb.EventType.EventProperty.PEERID})])

    def conns() -> list[pb.Connection]:
        return [pb.Connection(id=b"\x01", peer_id="12D3KooWpeer", transport_id=b"ip4+tcp")]

    intro.register("connections", conns)
    return intro


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint(make_introspector())
    await ep.start()
    yield ep
    await ep.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def recv_raw(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> aiohttp.WSMessage:
    return await asyncio.wait_for(ws.receive(), timeout)


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> pb.ServerMessage:
    frame = await recv_raw(ws, timeout)
    assert frame.type == aiohttp.WSMsgType.BINARY, frame
    result = decode_segments(frame.data)
    assert not result.errors and len(result.messages) == 1, result
    return result.messages[0]


async def hello(ws: aiohttp.ClientWebSocketResponse, cid: int = 1, **config: int) -> pb.ServerMessage:
    await ws.send_bytes(command(cid, CMD.HELLO, **config))
    reply = await recv(ws)
    assert reply.response.result == pb.CommandResponse.OK, reply
    return reply


def url(ep: Endpoint) -> str:
    return ep.listen_addrs()[0]


async def test_listen_addrs_default_to_loopback(endpoint: Endpoint) -> None:
    (addr,) = endpoint.listen_addrs()
    assert addr.startswith("ws://127.0.0.1:") and addr.endswith("/introspect")
    assert endpoint.port > 0


async def test_hello_reply_is_the_worked_example_byte_for_byte(endpoint: Endpoint, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(url(endpoint)) as ws:
        # the observer UI sends an empty Version; the server ignores it
        await ws.send_bytes(pb.ClientCommand(id=1, command=CMD.HELLO).SerializeToString())
        frame = await recv_raw(ws)
        assert frame.type == aiohttp.WSMsgType.BINARY
        assert frame.data == HELLO_REPLY
        version, checksum, length = WIRE_HEADER.unpack_from(frame.data)
        assert (version, length) == (1, len(frame.data) - 12)
        assert checksum == fnv1a32(frame.data[12:]) == 0x05045AA6


async def test_commands_before_hello_get_err_and_the_session_stays(
    endpoint: Endpoint, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(url(endpoint)) as ws:
        await ws.send_bytes(command(7, CMD.REQUEST, CMD.STATE))
        err = await recv(ws)
        assert err.response.id == 7 and err.response.result == pb.CommandResponse.ERR
        assert "HELLO" in err.response.error
        await hello(ws, 8)
        await ws.send_bytes(command(9, CMD.HELLO))
        again = await recv(ws)
        assert again.response.id == 9 and again.response.result == pb.CommandResponse.ERR
        await ws.send_bytes(command(10, CMD.REQUEST, CMD.RUNTIME))
        assert (await recv(ws)).runtime.implementation == "test-impl"


async def test_request_answers_with_the_message_itself(endpoint: Endpoint, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(url(endpoint)) as ws:
        await hello(ws)
        await ws.send_bytes(command(2, CMD.REQUEST, CMD.RUNTIME))
        rt = await recv(ws)
        assert rt.WhichOneof("payload") == "runtime" and rt.version.version == 1
        assert rt.runtime.peer_id == "12D3KooWtest"
        assert [et.name for et in rt.runtime.event_types] == ["PeerConnecting"]
        assert rt.runtime.event_types[0].property_types[0].type == pb.EventType.EventProperty.PEERID
        await ws.send_bytes(command(3, CMD.REQUEST, CMD.STATE))
        st = await recv(ws)
        assert st.WhichOneof("payload") == "state"
        assert st.state.instant_ts >= st.state.start_ts > 0
        assert [c.peer_id for c in st.state.subsystems.connections] == ["12D3KooWpeer"]
        await ws.send_bytes(command(4, CMD.REQUEST, CMD.EVENTS))
        err = await recv(ws)
        assert err.response.id == 4 and err.response.result == pb.CommandResponse.ERR


async def test_config_limits_in_hello_and_update_config(endpoint: Endpoint, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(url(endpoint)) as ws:
        ok = await hello(ws, 1, interval_ms=2000, retention_ms=120_000)  # the observer UI's handshake
        cfg = ok.response.effective_config
        assert (cfg.state_snapshot_interval_ms, cfg.retention_period_ms) == (2000, 120_000)
        await ws.send_bytes(command(2, CMD.UPDATE_CONFIG, interval_ms=100, retention_ms=999_999))
        upd = await recv(ws)
        assert upd.response.id == 2 and upd.response.result == pb.CommandResponse.OK
        cfg = upd.response.effective_config
        assert (cfg.state_snapshot_interval_ms, cfg.retention_period_ms) == (500, 120_000)
        await ws.send_bytes(command(3, CMD.UPDATE_CONFIG, interval_ms=700))  # retention 0 = keep
        cfg = (await recv(ws)).response.effective_config
        assert (cfg.state_snapshot_interval_ms, cfg.retention_period_ms) == (700, 120_000)


async def test_push_state_every_interval_and_disable(endpoint: Endpoint, http: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    async with http.ws_connect(url(endpoint)) as ws:
        await hello(ws, 1, interval_ms=500)
        t0 = loop.time()
        await ws.send_bytes(command(2, CMD.PUSH_ENABLE, CMD.STATE))
        assert (await recv(ws)).response.id == 2
        first = await recv(ws)
        assert first.WhichOneof("payload") == "state"
        assert loop.time() - t0 >= 0.45  # the first State comes one interval later
        second = await recv(ws)
        assert second.state.instant_ts > first.state.instant_ts
        await ws.send_bytes(command(3, CMD.PUSH_DISABLE, CMD.STATE))
        # States already in flight may precede the OK; after it, none come.
        while (msg := await recv(ws)).WhichOneof("payload") == "state":
            pass
        assert msg.response.id == 3
        with pytest.raises(asyncio.TimeoutError):
            await recv_raw(ws, timeout=1.2)


async def test_push_runtime_is_an_error(endpoint: Endpoint, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(url(endpoint)) as ws:
        await hello(ws)
        await ws.send_bytes(command(2, CMD.PUSH_ENABLE, CMD.RUNTIME))
        assert (await recv(ws)).response.result == pb.CommandResponse.ERR


async def test_events_pause_resume_and_retention(http: aiohttp.ClientSession) -> None:
    clock = [1000.0]
    intro = make_introspector()
    ep = Endpoint(intro, clock=lambda: clock[0])
    await ep.start()
    try:
        async with http.ws_connect(url(ep)) as ws:
            await hello(ws, 1, retention_ms=10_000)
            await ws.send_bytes(command(2, CMD.PUSH_ENABLE, CMD.EVENTS))
            assert (await recv(ws)).response.id == 2
            intro.publish("PeerConnecting", {"peerId": "live"})
            live = await recv(ws)
            assert json.loads(live.event.content) == {"peerId": "live"}
            assert live.event.type.name == "PeerConnecting" and live.event.ts > 0
            await ws.send_bytes(command(3, CMD.PUSH_PAUSE, CMD.EVENTS))
            assert (await recv(ws)).response.id == 3
            intro.publish("PeerConnecting", {"peerId": "old"})
            clock[0] += 11.0  # older than the 10 s retention by the time of resume
            intro.publish("PeerConnecting", {"peerId": "a"})
            intro.publish("PeerConnecting", {"peerId": "b"})
            with pytest.raises(asyncio.TimeoutError):
                await recv_raw(ws, timeout=0.3)  # paused: nothing is sent
            await ws.send_bytes(command(4, CMD.PUSH_RESUME, CMD.EVENTS))
            ok = await recv(ws)
            assert ok.response.id == 4 and ok.response.result == pb.CommandResponse.OK  # the OK comes first
            assert [json.loads((await recv(ws)).event.content)["peerId"] for _ in range(2)] == ["a", "b"]
            intro.publish("PeerConnecting", {"peerId": "after"})
            assert json.loads((await recv(ws)).event.content)["peerId"] == "after"
            # PUSH_DISABLE of both sources while paused clears the queue
            await ws.send_bytes(command(5, CMD.PUSH_PAUSE))
            await recv(ws)
            intro.publish("PeerConnecting", {"peerId": "dropped"})
            await ws.send_bytes(command(6, CMD.PUSH_DISABLE, CMD.EVENTS))
            await recv(ws)
            await ws.send_bytes(command(7, CMD.PUSH_RESUME))
            assert (await recv(ws)).response.id == 7
            with pytest.raises(asyncio.TimeoutError):
                await recv_raw(ws, timeout=0.3)
        assert ep.stats["paused_pruned"] >= 1
    finally:
        await ep.close()


async def test_overflow_sends_discarding_events_and_counts(http: aiohttp.ClientSession) -> None:
    intro = make_introspector()
    ep = Endpoint(intro, event_queue=4)
    await ep.start()
    try:
        async with http.ws_connect(url(ep)) as ws:
            await hello(ws)
            await ws.send_bytes(command(2, CMD.PUSH_ENABLE, CMD.EVENTS))
            await recv(ws)
            for i in range(10):  # one loop turn: the sender cannot drain in between
                intro.publish("PeerConnecting", {"peerId": str(i)})
            notice = await recv(ws)
            assert notice.WhichOneof("payload") == "notice"
            assert notice.notice.kind == pb.ServerNotice.DISCARDING_EVENTS
            got = [json.loads((await recv(ws)).event.content)["peerId"] for _ in range(4)]
            assert got == ["0", "1", "2", "3"]
            assert ep.stats["events_dropped"] == 6 and ep.stats["notices_sent"] == 1
    finally:
        await ep.close()


async def test_client_limit(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector(), max_clients=2)
    await ep.start()
    try:
        a = await http.ws_connect(url(ep))
        b = await http.ws_connect(url(ep))
        await hello(a)
        await hello(b)
        async with http.ws_connect(url(ep)) as third:  # upgraded (pending), refused at HELLO
            await third.send_bytes(command(1, CMD.HELLO))
            refused = await recv(third)
            assert refused.response.result == pb.CommandResponse.ERR
            assert refused.response.error == "client limit reached"
            closed = await recv_raw(third)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and third.close_code == 1008
        assert ep.stats["clients_rejected"] == 1
        await a.close()
        # the server notices the close on its next read
        await until(lambda: len(ep.sessions) < 2, 5, "the closed session to leave")
        async with http.ws_connect(url(ep)) as c:
            await hello(c)
        await b.close()
    finally:
        await ep.close()


async def test_malformed_input_never_hurts_the_server(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector(), max_command_bytes=1024, max_bad_commands=5)
    await ep.start()
    try:
        async with http.ws_connect(url(ep)) as ws:
            await ws.send_bytes(b"\xff\xff\xff\xff\x0f")  # not a ClientCommand
            err = await recv(ws)
            assert err.response.result == pb.CommandResponse.ERR and err.response.id == 0
            await ws.send_str("hello")
            assert (await recv(ws)).response.result == pb.CommandResponse.ERR
            await hello(ws)
            await ws.send_bytes(pb.ClientCommand(id=5, command=6).SerializeToString())  # 6 is unused
            assert (await recv(ws)).response.error.startswith("unknown command")
            await ws.send_bytes(pb.ClientCommand(id=6, command=CMD.REQUEST, source=9).SerializeToString())
            assert (await recv(ws)).response.result == pb.CommandResponse.ERR
        async with http.ws_connect(url(ep)) as ws:
            await ws.send_bytes(b"\x00" * 4096)  # above the command size cap
            closed = await recv_raw(ws)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1009
        async with http.ws_connect(url(ep)) as ws:
            for _ in range(5):
                await ws.send_bytes(b"\xff")
            for _ in range(5):
                assert (await recv(ws)).response.result == pb.CommandResponse.ERR
            assert (await recv_raw(ws)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1008
        async with http.ws_connect(url(ep)) as ws:  # still serving
            await hello(ws)
        assert ep.stats["bad_commands"] >= 9 and ep.stats["sessions_closed_for_errors"] == 1
    finally:
        await ep.close()


async def test_a_failing_or_hanging_provider_costs_only_its_part(caplog: pytest.LogCaptureFixture) -> None:
    intro = make_introspector()

    def broken() -> pb.DHT:
        raise RuntimeError("routing table on fire")

    async def hangs() -> pb.Traffic:
        await asyncio.sleep(60)
        return pb.Traffic()

    intro.register("dht", broken, name="broken")
    intro.register("traffic", hangs, name="hangs")
    intro.register("traffic", lambda: pb.Traffic(traffic_in=pb.DataGauge(cum_bytes=5)), name="ok")
    with caplog.at_level(logging.WARNING, logger="exporter.introspector.api"):
        states = [await intro.fetch_full_state() for _ in range(3)]
    for st in states:
        assert [c.peer_id for c in st.subsystems.connections] == ["12D3KooWpeer"]
        assert st.traffic.traffic_in.cum_bytes == 5
        assert not st.subsystems.HasField("dht")
        assert st.snapshot_duration_ms == 0  # no covered period given: unset, not the build time
    assert intro.last_build_s >= 0.4  # the build waited for the hanging provider's time limit
    assert intro.build_s_total >= 3 * 0.4 and intro.snapshots == 3
    assert intro.faults[("dht:broken", "error")] == 3
    assert intro.faults[("traffic:hangs", "timeout")] == 3
    assert len([r for r in caplog.records if "provider" in r.getMessage()]) == 2  # once per fault kind


async def test_events_published_from_another_thread_are_delivered_on_the_loop(
    endpoint: Endpoint, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(url(endpoint)) as ws:
        await hello(ws)
        await ws.send_bytes(command(2, CMD.PUSH_ENABLE, CMD.EVENTS))
        await recv(ws)
        t = threading.Thread(target=endpoint.introspector.publish, args=("PeerConnecting", {"peerId": "t"}))
        t.start()
        t.join()
        msg = await recv(ws)
        assert json.loads(msg.event.content) == {"peerId": "t"}


async def test_close_ends_sessions_quickly(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector())
    await ep.start()
    ws = await http.ws_connect(url(ep))
    await hello(ws)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await ep.close()
    assert loop.time() - t0 < 2.0
    assert (await recv_raw(ws)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    with pytest.raises(aiohttp.ClientConnectorError):
        await http.ws_connect(url(ep) if ep.listen_addrs() else "ws://127.0.0.1:1/introspect")


async def test_random_and_mutated_commands_get_answers_and_the_server_survives(http: aiohttp.ClientSession) -> None:
    """Seeded garbage: every frame gets a well-formed answer (or the session is closed); the server lives."""
    import random

    rng = random.Random(4)
    valid = [
        command(i, c, s, interval_ms=rng.randrange(0, 5000))
        for i, (c, s) in enumerate([(0, 0), (1, 0), (1, 1), (2, 2), (4, 0), (5, 0), (7, 0)])
    ]
    ep = Endpoint(make_introspector(), max_bad_commands=1000)
    await ep.start()
    try:
        answered = 0
        async with http.ws_connect(url(ep)) as ws:
            await hello(ws)
            for _ in range(300):
                if rng.random() < 0.5:
                    payload = rng.randbytes(rng.randrange(0, 64))
                else:
                    payload = bytearray(rng.choice(valid))
                    for _ in range(rng.randrange(1, 4)):
                        if payload:
                            payload[rng.randrange(len(payload))] = rng.randrange(256)
                    payload = bytes(payload)
                await ws.send_bytes(payload)
                await ws.send_bytes(command(99_999, CMD.REQUEST, CMD.RUNTIME))  # a marker after each
                while True:  # everything up to the marker must be a well-formed server message
                    msg = await recv(ws)
                    answered += 1
                    if msg.WhichOneof("payload") == "runtime":
                        break
                await ws.send_bytes(command(99_998, CMD.PUSH_DISABLE, CMD.STATE))  # keep the session quiet
                await ws.send_bytes(command(99_997, CMD.PUSH_DISABLE, CMD.EVENTS))
                await ws.send_bytes(command(99_996, CMD.PUSH_RESUME))
                for _ in range(3):
                    answered += 1
                    while (await recv(ws)).WhichOneof("payload") != "response":
                        answered += 1
        assert answered >= 300 * 5  # at least one answer per frame sent
        assert ep.stats["bad_commands"] > 50
        async with http.ws_connect(url(ep)) as ws:
            await hello(ws)
    finally:
        await ep.close()


async def test_paused_states_are_queued_pruned_to_retention_and_sent_after_the_ok(
    http: aiohttp.ClientSession,
) -> None:
    clock = [1000.0]
    ep = Endpoint(make_introspector(), clock=lambda: clock[0])
    await ep.start()
    try:
        async with http.ws_connect(url(ep)) as ws:
            await hello(ws, 1, interval_ms=500, retention_ms=10_000)
            await ws.send_bytes(command(2, CMD.PUSH_PAUSE))
            assert (await recv(ws)).response.id == 2
            await ws.send_bytes(command(3, CMD.PUSH_ENABLE, CMD.STATE))
            assert (await recv(ws)).response.id == 3
            (session,) = ep.sessions
            await until(lambda: len(session.pause_queue) >= 1, 10, "a State queued while paused")
            assert len(session.pause_queue) == 1  # the first State, queued while paused
            clock[0] += 11.0  # that State is now older than the 10 s retention
            await until(lambda: len(session.pause_queue) >= 3, 10, "three States queued while paused")
            # the old State was pruned as newer ones were queued; only those within retention remain
            assert ep.stats["paused_pruned"] == 1
            assert [at for at, _ in session.pause_queue] == [1011.0] * len(session.pause_queue)
            queued = len(session.pause_queue)
            await ws.send_bytes(command(4, CMD.PUSH_RESUME))
            ok = await recv(ws)
            assert ok.response.id == 4  # the OK first, then the queue
            sent = [await recv(ws) for _ in range(queued)]
            assert all(m.WhichOneof("payload") == "state" for m in sent)
            stamps = [m.state.instant_ts for m in sent]
            assert stamps == sorted(stamps)
    finally:
        await ep.close()


async def test_snapshot_duration_is_the_period_since_the_clients_previous_state(
    endpoint: Endpoint, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(url(endpoint)) as ws:
        before_hello = int(time.time() * 1000)
        await hello(ws, 1, interval_ms=500)
        await ws.send_bytes(command(2, CMD.REQUEST, CMD.STATE))
        asked = (await recv(ws)).state
        # a State asked for right after HELLO covers the time since HELLO, not the time spent building it
        assert 0 <= asked.snapshot_duration_ms <= asked.instant_ts - before_hello
        enabled_at = int(time.time() * 1000)
        await ws.send_bytes(command(3, CMD.PUSH_ENABLE, CMD.STATE))
        assert (await recv(ws)).response.id == 3
        pushed = [(await recv(ws)).state for _ in range(4)]
    # the first push covers one interval from PUSH_ENABLE; each later one exactly the gap to the previous
    assert pushed[0].snapshot_duration_ms >= 500 - 1
    assert pushed[0].snapshot_duration_ms <= pushed[0].instant_ts - enabled_at + 1
    for prev, cur in itertools.pairwise(pushed):
        assert cur.snapshot_duration_ms == cur.instant_ts - prev.instant_ts >= 500 - 1
    assert endpoint.introspector.last_build_s >= 0  # the build time stays on the producer's side


async def test_every_connection_carries_streams_even_when_a_provider_leaves_them_out(
    endpoint: Endpoint, http: aiohttp.ClientSession
) -> None:
    # make_introspector's provider returns a Connection with no StreamList at all
    async with http.ws_connect(url(endpoint)) as ws:
        await hello(ws)
        await ws.send_bytes(command(2, CMD.REQUEST, CMD.STATE))
        st = (await recv(ws)).state
    (conn,) = st.subsystems.connections
    assert conn.HasField("streams") and not conn.streams.streams
    assert conn.SerializeToString().endswith(b"\x5a\x00")  # field 11, empty: what the observer UI needs
    assert pb.Connection(id=b"\x01").SerializeToString() == b"\x0a\x01\x01"  # (without it there is no 5a 00)


# Issue 13, defect 7: endpoint slots are given back (HELLO deadline, idle limit), a 64 KiB command
# is accepted as documented, and an oversized WebSocket message counts as reason="frame".


async def test_a_client_that_never_says_hello_gives_its_slot_back(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector(), max_clients=1, hello_timeout_s=0.3)
    await ep.start()
    try:
        silent = await http.ws_connect(url(ep))
        closed = await recv_raw(silent, timeout=5.0)  # fails loudly if the deadline never comes
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert silent.close_code == 1008
        await until(lambda: not ep.sessions, 5.0, "the slot given back")
        async with http.ws_connect(url(ep)) as ws:
            await hello(ws)
        assert ep.stats["sessions_closed_hello_timeout"] == 1
    finally:
        await ep.close()


async def test_an_idle_client_gives_its_slot_back(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector(), max_clients=1, idle_timeout_s=0.4)
    await ep.start()
    try:
        idle = await http.ws_connect(url(ep))
        await hello(idle)  # then nothing pushed and nothing asked
        closed = await recv_raw(idle, timeout=5.0)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and idle.close_code == 1008
        await until(lambda: not ep.sessions, 5.0, "the slot given back")
        assert ep.stats["sessions_closed_idle_timeout"] == 1
    finally:
        await ep.close()


async def test_a_command_of_exactly_64_kib_is_accepted(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector())
    await ep.start()
    try:
        base = pb.ClientCommand(id=1, command=CMD.HELLO).SerializeToString()
        # Pad with an unknown length-delimited field (number 15): tag 0x7a, a 3-byte varint length.
        filler = 65536 - len(base) - 1 - 3
        data = base + b"\x7a" + bytes([0x80 | (filler & 0x7F), 0x80 | ((filler >> 7) & 0x7F), filler >> 14])
        data += b"x" * filler
        assert len(data) == 65536
        async with http.ws_connect(url(ep)) as ws:
            await ws.send_bytes(data)
            reply = await recv(ws)
            assert reply.response.result == pb.CommandResponse.OK
            await ws.send_bytes(data + b"x")  # one byte more: over the cap
            closed = await recv_raw(ws)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 1009
    finally:
        await ep.close()


async def test_a_message_over_max_frame_size_is_a_frame_failure(server: IntrospectServer) -> None:
    server.add("", connections=40)  # a State of a few KiB
    hub = build_hub(live=True)
    session = Session(hub, "n", server.url(), replace(FAST, max_frame_bytes=1024))
    session.start()
    try:
        await until(lambda: session.stats.failures["frame"] >= 1, 15.0, "a frame failure")
        assert session.stats.failures["error"] == 0
        assert hub.nodes["n"].segment_errors["frame"] >= 1
    finally:
        await session.close()
    await asyncio.sleep(0)


# Issue 25, item 2: connections that never say HELLO cannot lock real clients out. They wait in a
# pending pool of 4 (the oldest closed for each newcomer); only HELLO takes one of the 16 client slots.


async def test_silent_connections_never_lock_out_a_real_client(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector())  # the defaults: 16 clients, 4 pending, 10 s to say HELLO
    await ep.start()
    silent: list[aiohttp.ClientWebSocketResponse] = []
    stop = asyncio.Event()
    # The attacker's own client, with no pool limit: its held sockets never queue the real client's.
    evil = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def attacker(rate_per_s: float) -> None:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                silent.append(await asyncio.wait_for(evil.ws_connect(url(ep)), 5.0))
            await asyncio.sleep(1.0 / rate_per_s)

    attack = None
    try:
        # A burst first, more than every slot of both pools, then a steady 5 connections/s (the issue
        # saw every slot held at 1.7/s); none of them ever sends a byte or reads one.
        burst = await asyncio.gather(*(evil.ws_connect(url(ep)) for _ in range(40)), return_exceptions=True)
        silent.extend(ws for ws in burst if isinstance(ws, aiohttp.ClientWebSocketResponse))
        assert len(silent) >= 16  # at least every client slot: the attack is real
        attack = asyncio.create_task(attacker(5.0))
        failures = []
        for i in range(10):
            started = time.monotonic()
            try:
                async with http.ws_connect(url(ep)) as ws:
                    await ws.send_bytes(command(1, CMD.HELLO))
                    reply = await recv(ws, timeout=2.0)
                    served = time.monotonic() - started
                    if reply.response.result != pb.CommandResponse.OK or served > 2.0:
                        failures.append((i, reply.response.error, served))
            except (aiohttp.ClientError, asyncio.TimeoutError, AssertionError) as exc:
                failures.append((i, repr(exc), time.monotonic() - started))
            await asyncio.sleep(0.2)
        assert not failures, failures
        assert ep.stats["clients_evicted"] >= 40
        assert len(ep.pending) <= 4 and not ep.clients
    finally:
        stop.set()
        if attack is not None:
            await attack
        for ws in silent:
            await ws.close()
        await evil.close()
        await ep.close()


async def test_hello_with_the_main_pool_full_is_refused_and_the_pending_pool_is_bounded(
    http: aiohttp.ClientSession,
) -> None:
    ep = Endpoint(make_introspector(), max_clients=1, max_pending=2)
    await ep.start()
    try:
        async with http.ws_connect(url(ep)) as first:
            await hello(first)
            waiting = [await http.ws_connect(url(ep)) for _ in range(3)]  # the oldest of 3 is evicted
            closed = await recv_raw(waiting[0])
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and waiting[0].close_code == 1008
            await until(lambda: len(ep.pending) == 2, 5.0, "two pending")
            await waiting[1].send_bytes(command(1, CMD.HELLO))
            refused = await recv(waiting[1])
            assert refused.response.result == pb.CommandResponse.ERR
            assert refused.response.error == "client limit reached"
            for ws in waiting:
                await ws.close()
        assert ep.stats["clients_evicted"] == 1 and ep.stats["clients_rejected"] == 1
    finally:
        await ep.close()
