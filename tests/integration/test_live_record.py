"""Recording live sessions: replayable, rotated, and safe against an unclean stop."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from exporter.app.runtime import build_hub
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import SegmentError
from exporter.sources.capture import iter_capture
from exporter.sources.recording import RotatingRecorder
from exporter.sources.replay import replay
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer
from tests.support.live import FAST
from tests.support.procs import until
from tests.support.samples import hub_series


def node_samples(hub: Hub) -> dict:
    """Every series derived from the node's data (the session's own bookkeeping aside)."""
    # mapper_errors: one series per mapper the hub has, and only the live hub has the session mapper
    skip = (
        "libp2p_exporter_session_",
        "libp2p_exporter_up",
        "libp2p_exporter_segment_errors",
        "libp2p_exporter_mapper_errors",
    )
    return {k: v for k, v in hub_series(hub).items() if k[1] and not k[0].startswith(skip)}


async def test_record_then_replay_gives_the_same_metrics(server: IntrospectServer, tmp_path: Path) -> None:
    fake = server.add("", connections=12, push_runtime_on_connect=True)
    hub = build_hub(live=True)
    rec = RotatingRecorder(tmp_path, "n")
    session = Session(hub, "n", server.url(), replace(FAST, stale_intervals=1000), recorder=rec)
    session.start()
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 8, what="states")
        fake.mode = "stall"  # freeze the stream
    finally:
        # close() drains the buffer into the hub and the recorder alike, so both hold exactly the
        # same messages (a sleep here raced with a State still in flight on a loaded machine).
        await session.close()
    hub.nodes["n"].up = True  # closed sessions mark the node down; compare the data it had
    live = node_samples(hub)
    assert len(rec.files) == 1
    replayed = build_hub()
    await replay(replayed, rec.files[0], node="n", speed=0)
    assert node_samples(replayed) == live
    assert any(k[0] == "libp2p_streams_opened_total" for k in live)
    first = next(m for m in iter_capture(rec.files[0]) if not isinstance(m, SegmentError))
    assert first.WhichOneof("payload") == "runtime"  # loadable by the observer UI


async def test_rotation_by_size_each_file_stands_alone(server: IntrospectServer, tmp_path: Path) -> None:
    server.add("", connections=8)
    hub = build_hub(live=True)
    rec = RotatingRecorder(tmp_path, "ws://odd/name", max_bytes=4000)
    session = Session(hub, "n", server.url(), FAST, recorder=rec)
    session.start()
    try:
        await until(lambda: len(rec.files) >= 3, what="rotations")
    finally:
        await session.close()
    assert all(p.parent.name == "ws_odd_name" for p in rec.files)
    total_states = 0
    for path in rec.files:
        msgs = [m for m in iter_capture(path) if not isinstance(m, SegmentError)]
        assert not [m for m in iter_capture(path) if isinstance(m, SegmentError)]
        kinds = [m.WhichOneof("payload") for m in msgs]
        assert kinds[:2] == ["runtime", "response"] and msgs[1].response.effective_config.state_snapshot_interval_ms
        total_states += kinds.count("state")
    assert total_states == hub.nodes["n"].messages["state"]


async def test_rotation_by_age(tmp_path: Path) -> None:
    rec = RotatingRecorder(tmp_path, "n", max_age_s=0.05)
    rt = pb.ServerMessage()
    rt.runtime.peer_id = "p"
    rec.write(rt)
    st = pb.ServerMessage()
    st.state.instant_ts = 1
    rec.write(st)
    await asyncio.sleep(0.1)
    rec.write(st)
    rec.close()
    assert len(rec.files) == 2


def test_torn_last_segment_is_skipped(tmp_path: Path) -> None:
    rec = RotatingRecorder(tmp_path, "n")
    rt = pb.ServerMessage()
    rt.runtime.peer_id = "p"
    rec.write(rt)
    for ts in range(1, 6):
        st = pb.ServerMessage()
        st.state.instant_ts = ts
        rec.write(st)
    # An unclean stop: the process dies mid-write, the file ends inside the last segment.
    path = rec.files[0]
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    items = list(iter_capture(path))
    states = [m for m in items if not isinstance(m, SegmentError) and m.WhichOneof("payload") == "state"]
    errors = [e for e in items if isinstance(e, SegmentError)]
    assert [s.state.instant_ts for s in states] == [1, 2, 3, 4]
    assert len(errors) == 1 and errors[0].reason == "truncated"


async def test_recording_through_the_cli_replays(server: IntrospectServer, tmp_path: Path) -> None:
    """``--record DIR`` in live mode writes files ``libp2p-exporter replay``/``inspect`` accept."""
    from exporter.app.config import build
    from exporter.app.live import run_live

    server.add("", connections=5)
    cfg = build(
        {"record_dir": str(tmp_path), "interval": 0.1, "listen": "127.0.0.1:0"},
        [f"node-x={server.url()}"],
        None,
        env={},
    )
    cfg = replace(cfg, options=replace(cfg.options, read_timeout_s=2.0))
    task = asyncio.create_task(run_live(cfg, duration=1.0))
    assert await task == 0
    files = list((tmp_path / "node-x").glob("*.libp2p.trace"))
    assert len(files) == 1
    from exporter.sources.capture import summarize

    summary = summarize(files[0])
    assert summary.counts["state"] >= 3 and summary.runtime is not None and not summary.errors


def test_held_messages_without_runtime_are_bounded(tmp_path: Path) -> None:
    """A server that never sends a Runtime: held messages stay under the byte bound (they used to
    pile up to 10,000 messages of up to 8 MiB each), go to a file anyway, and a late Runtime
    starts a new file that opens with it."""
    rec = RotatingRecorder(tmp_path, "n")
    rec.MAX_HELD_BYTES = 20_000
    st = pb.ServerMessage()
    st.state.instant_ts = 1
    for i in range(50):
        st.state.subsystems.connections.add(id=bytes([i]), peer_id="Qm" + "x" * 40)
    size = st.ByteSize()
    for ts in range(1, 101):
        msg = pb.ServerMessage()
        msg.CopyFrom(st)
        msg.state.instant_ts = ts
        rec.write(msg)
        assert rec.held_bytes <= 20_000 + size
    assert len(rec.files) == 1 and not rec.held
    rt = pb.ServerMessage()
    rt.runtime.peer_id = "late"
    rec.write(rt)
    st.state.instant_ts = 101
    rec.write(st)
    rec.close()
    first = [m for m in iter_capture(rec.files[0]) if not isinstance(m, SegmentError)]
    assert [m.state.instant_ts for m in first] == list(range(1, 101))
    second = [m for m in iter_capture(rec.files[1]) if not isinstance(m, SegmentError)]
    assert [m.WhichOneof("payload") for m in second] == ["runtime", "state"]


def test_recordings_never_overwrite_each_other(tmp_path: Path) -> None:
    """Two recorders on one file name (an exporter restarted within the same second, or target
    names that sanitise alike: "a:1" and "a_1") used to truncate each other's files."""
    rt = pb.ServerMessage()
    rt.runtime.peer_id = "p"
    first = RotatingRecorder(tmp_path, "a:1")
    first.write(rt)
    second = RotatingRecorder(tmp_path, "a_1")
    second.write(rt)
    for ts, rec in ((1, first), (2, second)):
        st = pb.ServerMessage()
        st.state.instant_ts = ts
        rec.write(st)
        rec.close()
    assert first.files[0] != second.files[0]
    for ts, rec in ((1, first), (2, second)):
        msgs = [m for m in iter_capture(rec.files[0]) if not isinstance(m, SegmentError)]
        assert [m.WhichOneof("payload") for m in msgs] == ["runtime", "state"]
        assert msgs[1].state.instant_ts == ts
