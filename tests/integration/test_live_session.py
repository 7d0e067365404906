"""The WebSocket client against the scripted protocol server (tests/support/introspect_server.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from exporter.app.runtime import build_hub
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.buffer import Backoff, BoundedBuffer
from exporter.sources.options import SessionOptions
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer
from tests.support.live import FAST
from tests.support.procs import until
from tests.support.samples import Series, hub_series
from tests.support.samples import value as sample_value


def samples(hub: Hub, nodes: list[str] | None = None) -> Series:
    return hub_series(hub, nodes)


def value(hub: Hub, name: str, node: str = "n", **labels: str) -> float | None:
    return sample_value(hub_series(hub), name, node=node, **labels)


@pytest.fixture
async def hub() -> Hub:
    return build_hub(live=True)


async def started(hub: Hub, url: str, opts: SessionOptions = FAST) -> Session:
    session = Session(hub, "n", url, opts)
    session.start()
    return session


async def test_handshake_order_and_streaming(server: IntrospectServer, hub: Hub) -> None:
    fake = server.add("")
    last: list[pb.State] = []

    class States:
        """A recorder: sees each message right after the hub ingested it."""

        def write(self, msg: pb.ServerMessage) -> None:
            if msg.WhichOneof("payload") == "state":
                last.append(msg.state)

        def close(self) -> None:
            pass

    session = Session(hub, "n", server.url(), FAST, recorder=States())
    session.start()
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 3, what="three states")
        cmds = [(c.command, c.source) for c in fake.commands]
        C = pb.ClientCommand
        assert cmds[:4] == [
            (C.HELLO, C.STATE),
            (C.REQUEST, C.RUNTIME),
            (C.PUSH_ENABLE, C.EVENTS),
            (C.PUSH_ENABLE, C.STATE),
        ]
        assert fake.commands[0].config.state_snapshot_interval_ms == 100
        assert fake.commands[0].config.retention_period_ms == 120000
        ids = [c.id for c in fake.commands]
        assert len(set(ids)) == len(ids) and ids == sorted(ids)
        assert session.stats.state == "streaming"
        assert session.stats.effective_interval_ms == 100
        assert hub.nodes["n"].runtime is not None and hub.nodes["n"].runtime.peer_id == fake.data.peer_id
        assert value(hub, "libp2p_exporter_up") == 1.0
        assert value(hub, "libp2p_exporter_session_state", state="streaming") == 1.0
        # What /metrics shows equals the last State that came over the wire (no await in between, so
        # no newer State can slip in): connections by status and distinct peers with an open one.
        st = last[-1]
        got = samples(hub)
        for code, status in ((pb.ACTIVE, "active"), (pb.CLOSED, "closed")):
            want = sum(1 for c in st.subsystems.connections if c.status == code)
            shown = sum(v for (n, lbl), v in got.items() if n == "libp2p_connections" and ("status", status) in lbl)
            assert shown == want, status
        open_peers = {c.peer_id for c in st.subsystems.connections if c.status == pb.ACTIVE and not c.timeline.close_ts}
        assert open_peers and got[("libp2p_peers", (("node", "n"),))] == len(open_peers)
    finally:
        await session.close()
    assert session.stats.state == "closed"


def test_backoff_grows_caps_and_resets() -> None:
    import random

    b = Backoff(0.5, 4.0, 2.0, 0.2, random.Random(1))
    delays = [b.next() for _ in range(8)]
    assert 0.4 <= delays[0] <= 0.6
    assert delays[2] > delays[0]
    assert all(d <= 4.0 for d in delays) and delays[-1] >= 3.2
    b.reset()
    assert b.next() <= 0.6


async def test_bounded_buffer_drops_events_first() -> None:
    from collections import Counter

    dropped: Counter[str] = Counter()
    buf = BoundedBuffer(3, dropped)
    ev = pb.ServerMessage()
    ev.event.type.name = "X"
    st = pb.ServerMessage()
    st.state.instant_ts = 1
    for _ in range(3):
        buf.put(ev)
    buf.put(ev)  # full: the new event goes
    buf.put(st)  # full: the oldest entry makes room for the State
    assert len(buf) == 3 and dropped == Counter(event=2)
    assert buf.take()[-1].WhichOneof("payload") == "state"


async def test_bounded_buffer_bounds_bytes_too() -> None:
    """A message can be 8 MiB: 4096 of them would be 32 GiB, so the buffer also bounds bytes."""
    from collections import Counter

    dropped: Counter[str] = Counter()
    buf = BoundedBuffer(100, dropped, max_bytes=1000)
    st = pb.ServerMessage()
    st.state.instant_ts = 1
    ev = pb.ServerMessage()
    ev.event.type.name = "X"
    for _ in range(3):
        buf.put(st, 300)
    buf.put(ev, 200)  # 1100 > 1000: the event goes
    assert len(buf) == 3 and buf.bytes == 900 and dropped == Counter(event=1)
    buf.put(st, 700)  # a State pushes out the oldest until it fits: 600 + 700 > 1000, 300 + 700 fits
    assert len(buf) == 2 and buf.bytes == 1000 and dropped == Counter(event=1, state=2)
    buf.put(st, 5000)  # bigger than the bound on its own: it is kept alone rather than lost
    assert len(buf) == 1 and buf.bytes == 5000
    assert len(buf.take()) == 1 and buf.bytes == 0


# -- scripted server behaviours ------------------------------------------------------------------


async def test_server_waits_for_hello_and_refuses_early_commands(server: IntrospectServer) -> None:
    """The test server itself follows docs/protocol.md section 3 (so the other tests mean something)."""
    import aiohttp

    from tests.support.introspect_server import fnv1a

    server.add("")
    C = pb.ClientCommand
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url()) as ws:
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.3)  # nothing until HELLO
        await ws.send_bytes(pb.ClientCommand(id=7, command=C.REQUEST, source=C.RUNTIME).SerializeToString())
        frame = await ws.receive(timeout=2)
        data = frame.data
        assert int.from_bytes(data[4:8], "little") == fnv1a(data[12:])
        msg = pb.ServerMessage.FromString(data[12:])
        assert msg.response.id == 7 and msg.response.result == pb.CommandResponse.ERR


async def test_text_frames_and_empty_version(server: IntrospectServer, hub: Hub) -> None:
    server.add("", text_frames=True, empty_version=True)
    session = await started(hub, server.url())
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 2, what="states over text frames")
        assert session.stats.frames["text"] >= 3 and session.stats.frames["binary"] == 0
        assert value(hub, "libp2p_exporter_session_frames_total", type="text") >= 3
        assert value(hub, "libp2p_exporter_up") == 1.0
        assert sum(hub.nodes["n"].segment_errors.values()) == 0
    finally:
        await session.close()


async def test_runtime_pushed_on_connect(server: IntrospectServer, hub: Hub) -> None:
    fake = server.add("", push_runtime_on_connect=True)
    session = await started(hub, server.url())
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 1, what="a state")
        node = hub.nodes["n"]
        assert node.messages["runtime"] == 2  # pushed, then the answer to REQUEST RUNTIME
        assert node.runtime is not None and node.runtime.peer_id == fake.data.peer_id
        assert node.restarts == 0
    finally:
        await session.close()


async def test_bad_checksums_and_oversized_lengths_are_counted(server: IntrospectServer, hub: Hub) -> None:
    fake = server.add("")
    session = await started(hub, server.url())
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 1, what="a state")
        fake.mode = "corrupt"
        node = hub.nodes["n"]
        await until(
            lambda: node.segment_errors["checksum"] >= 2 and node.segment_errors["oversized"] >= 2, what="errors"
        )
        before = node.messages["state"]
        await until(lambda: node.messages["state"] >= before + 2, what="states after the damage")
        assert value(hub, "libp2p_exporter_segment_errors_total", reason="checksum") >= 2
        assert value(hub, "libp2p_exporter_segment_errors_total", reason="oversized") >= 2
        assert value(hub, "libp2p_exporter_up") == 1.0
        assert session.stats.failures.total() == 0  # damage inside a frame does not end the session
    finally:
        await session.close()


async def test_stall_goes_stale_then_reconnects(server: IntrospectServer, hub: Hub) -> None:
    fake = server.add("")
    session = await started(hub, server.url())
    try:
        node = hub.nodes["n"]
        await until(lambda: node.messages.get("state", 0) >= 2, what="states")
        fake.mode = "stall"
        await until(lambda: value(hub, "libp2p_exporter_up") == 0.0, what="up to drop", timeout=5)
        s = samples(hub)
        assert ("libp2p_exporter_last_snapshot_timestamp_seconds", (("node", "n"),)) in s  # stays visible
        assert not any(k[0] == "libp2p_peers" for k in s)  # stale data is not exported
        await until(lambda: session.stats.failures["stalled"] >= 1, what="read timeout", timeout=10)
        fake.mode = "normal"
        await until(lambda: value(hub, "libp2p_exporter_up") == 1.0, what="up again", timeout=5)
        assert value(hub, "libp2p_exporter_session_reconnects_total") >= 1
        assert node.restarts == 0
    finally:
        await session.close()


async def test_abrupt_close_reconnects_without_counting_a_restart(server: IntrospectServer, hub: Hub) -> None:
    fake = server.add("")
    session = await started(hub, server.url())
    try:
        node = hub.nodes["n"]
        await until(lambda: node.messages.get("state", 0) >= 2, what="states")
        traffic = value(hub, "libp2p_traffic_bytes_total", direction="in")
        fake.mode = "close"
        await until(lambda: fake.connects >= 2 or session.stats.failures.total() >= 1, what="the drop")
        fake.mode = "normal"
        await until(lambda: fake.connects >= 2 and session.stats.state == "streaming", what="reconnect")
        runtimes = node.messages["runtime"]
        await until(lambda: node.messages["runtime"] >= 2 and node.messages["state"] >= 4, what="new session data")
        assert runtimes >= 1
        assert node.restarts == 0  # same peer id, traffic still growing: the same node
        assert value(hub, "libp2p_traffic_bytes_total", direction="in") >= traffic
        ids = [c.id for c in fake.commands]
        assert len(set(ids)) == len(ids)  # command ids never repeat across reconnects
    finally:
        await session.close()


@pytest.mark.parametrize("new_peer", [False, True])
async def test_restart_continues_counters(server: IntrospectServer, hub: Hub, new_peer: bool) -> None:
    fake = server.add("", connections=10)
    session = await started(hub, server.url())
    try:
        node = hub.nodes["n"]
        await until(lambda: node.messages.get("state", 0) >= 4, what="states")
        before = value(hub, "libp2p_traffic_bytes_total", direction="in")
        old_peer = fake.data.peer_id
        fake.mode = "close"
        await until(lambda: session.stats.failures.total() >= 1, what="the drop")
        fake.restart(new_peer=new_peer)  # new start_ts, traffic from zero
        fake.mode = "normal"
        await until(lambda: node.restarts >= 1, what="restart detected")
        await until(lambda: node.messages["state"] >= 8, what="states after the restart")
        assert value(hub, "libp2p_exporter_node_restarts_total") == 1.0
        after = value(hub, "libp2p_traffic_bytes_total", direction="in")
        assert after is not None and before is not None and after >= before  # monotonic across the restart
        assert (fake.data.peer_id != old_peer) == new_peer
    finally:
        await session.close()


async def test_event_flood_is_bounded_and_counted(server: IntrospectServer, hub: Hub) -> None:
    from dataclasses import replace

    fake = server.add("", flood_events=3000)
    session = await started(hub, server.url(), replace(FAST, queue_size=256))
    try:
        node = hub.nodes["n"]
        await until(lambda: node.messages.get("state", 0) >= 1, what="a state")
        fake.mode = "flood"
        await until(lambda: session.stats.dropped["event"] >= 2000, what="drops")
        states = node.messages["state"]
        await until(lambda: node.messages["state"] >= states + 2, what="states keep coming")
        assert session.stats.queue_high_water <= 256
        assert value(hub, "libp2p_exporter_session_dropped_messages_total", kind="event") >= 2000
        assert value(hub, "libp2p_exporter_session_dropped_messages_total", kind="state") == 0
        assert value(hub, "libp2p_events_total", type="PeerConnecting") >= 1
        assert value(hub, "libp2p_exporter_up") == 1.0
    finally:
        await session.close()


async def test_hello_refused_backs_off_and_retries(server: IntrospectServer, hub: Hub) -> None:
    fake = server.add("", refuse_hellos=2, err_commands={(pb.ClientCommand.PUSH_ENABLE, pb.ClientCommand.EVENTS)})
    session = await started(hub, server.url())
    try:
        await until(lambda: session.stats.state == "streaming", what="a session at last")
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 1, what="a state")
        assert session.stats.failures["hello_refused"] == 2
        assert fake.connects >= 3
        # two refused HELLOs, then one refused PUSH_ENABLE EVENTS per accepted session
        assert value(hub, "libp2p_exporter_command_errors_total") == 2 + (fake.connects - 2)
        assert value(hub, "libp2p_exporter_session_failures_total", reason="hello_refused") == 2.0
    finally:
        await session.close()


async def test_backoff_resets_after_a_healthy_session_that_ended_in_a_stall(server: IntrospectServer, hub: Hub) -> None:
    """Only a clean close used to reset the backoff: a node that streamed for hours and then stalled
    (or missed a pong) was retried at the capped delay left over from earlier failures."""
    from dataclasses import replace

    fake = server.add("")
    session = await started(hub, server.url(), replace(FAST, read_timeout_s=1.0))
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 2, what="states")
        session.backoff.attempt = 10  # as if it had failed many times before this session
        fake.mode = "stall"
        await until(lambda: session.stats.failures["stalled"] >= 1, what="the stall noticed")
        assert session.backoff.attempt <= 2  # reset, then one delay taken (two if it stalled again)
    finally:
        await session.close()


async def test_data_before_any_accepted_hello_is_not_up(server: IntrospectServer, hub: Hub) -> None:
    """A server that pushes States on connect but refuses every HELLO never has a session: the node
    must read down. It used to read up=1 for good: the node started up and had no staleness bound."""
    server.add("", push_state_on_connect=True, refuse_hellos=1_000_000)
    session = await started(hub, server.url())
    try:
        await until(lambda: session.stats.failures["hello_refused"] >= 2, what="refused HELLOs")
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 2, what="pushed States")
        assert value(hub, "libp2p_exporter_up") == 0.0
        assert not any(k[0] == "libp2p_peers" for k in samples(hub))
        assert session.stats.established == 0
    finally:
        await session.close()


async def test_unreachable_target_is_down_and_backing_off(hub: Hub) -> None:
    from tests.support.procs import free_port

    session = await started(hub, f"ws://127.0.0.1:{free_port()}/introspect")
    try:
        await until(lambda: session.stats.failures["connect"] >= 2, what="failed connects")
        assert value(hub, "libp2p_exporter_up") == 0.0
        assert value(hub, "libp2p_exporter_session_reconnects_total") >= 1
    finally:
        await session.close()


async def test_reconnect_warnings_are_rate_limited(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    """One warning when the target goes down, the repeats counted (not one line per attempt)."""
    from tests.support.procs import free_port

    with caplog.at_level(logging.WARNING, logger="exporter.sources.websocket"):
        session = await started(hub, f"ws://127.0.0.1:{free_port()}/introspect")
        try:
            await until(lambda: session.stats.failures["connect"] >= 5, what="five failed connects")
        finally:
            await session.close()
    lines = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert len(lines) == 1, lines
    summary = [r.getMessage() for r in caplog.records if "more like this suppressed" in r.getMessage()]
    assert len(summary) == 1  # the other attempts, counted and reported when the session ended
    suppressed = int(summary[0].split(": ")[1].split()[0])
    assert suppressed + 1 == session.stats.failures["connect"]


async def test_heartbeat_detects_a_peer_that_stops_answering(server: IntrospectServer, hub: Hub) -> None:
    from dataclasses import replace

    fake = server.add("", autoping=False)
    session = await started(hub, server.url(), replace(FAST, heartbeat_s=0.3, read_timeout_s=30.0))
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 1, what="a state")
        fake.mode = "stall"
        await until(lambda: session.stats.failures.total() >= 1, what="the dead peer noticed", timeout=5)
        assert session.stats.failures["stalled"] == 0  # the read timeout (30 s) did not do it
        assert session.stats.failures["heartbeat"] >= 1, session.stats.failures
    finally:
        await session.close()


def test_server_error_text_stays_on_one_log_line() -> None:
    from exporter.sources.websocket import _reason

    text = _reason("bad\nfake log line " + "x" * 10_000)
    assert "\n" not in text and len(text) < 220 and text.startswith("'bad\\n")
    assert _reason("") == "no reason given"
