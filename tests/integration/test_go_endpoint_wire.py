"""The Go endpoint (producers/go/introspect/ws) read by this project's own readers.

A tiny Go program, producers/go/cmd/introspect-fake, serves a deterministic fake node
(producers/go/internal/fakesource) with the Go endpoint on 127.0.0.1:0 and prints its URL. It is built
with `go build` once per test session (tests/support/go_tools.py); a failed build fails the tests.
Then the exporter's live source (exporter/sources/websocket.py) streams from it, and the vendored
observer-toolkit data layer (tests/observer) reads a live session as the UI speaks it and a
`--record` recording of it: 0 failures, every message counted as `inspect` counts it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.app.runtime import build_hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.websocket import Session
from tests.support.live import FAST
from tests.support.observer import (
    Reader,
    cli,
    read_session_and_recording,
    ui_session,
)
from tests.support.procs import Proc, spawn, start_exporter, until, wait_for

URL_LINE = re.compile(r"^(ws://127\.0\.0\.1:\d+/introspect)$", re.M)


@pytest.fixture
def go_node(go_tools: dict[str, Path], tmp_path: Path) -> Iterator[tuple[str, Proc]]:
    """The fake Go node, serving; its URL from its first line of output."""
    proc = spawn([str(go_tools["introspect-fake"]), "-step", "250ms"], tmp_path / "go", "introspect-fake", 0)
    try:
        url = wait_for(lambda: (m := URL_LINE.search(proc.output())) and m.group(1), 30, "the Go endpoint's URL")
        yield url, proc
    finally:
        proc.stop()


async def test_the_exporters_live_source_streams_from_the_go_endpoint(go_node: tuple[str, Proc]) -> None:
    url, proc = go_node
    hub = build_hub(live=True)
    states: list[pb.State] = []

    class Recorder:
        def write(self, msg: pb.ServerMessage) -> None:
            if msg.WhichOneof("payload") == "state":
                states.append(msg.state)

        def close(self) -> None:
            pass

    session = Session(hub, "go", url, FAST, recorder=Recorder())
    session.start()
    try:
        node = await until(lambda: hub.nodes.get("go"), what="the node")
        await until(lambda: node.messages.get("state", 0) >= 4 and node.messages.get("event", 0) >= 4, 30, "states")
        assert session.stats.state == "streaming"
        assert session.stats.effective_interval_ms == 500  # FAST asks for 100 ms; the endpoint's floor
        assert sum(session.stats.failures.values()) == 0, session.stats.failures
        assert not node.segment_errors, node.segment_errors
        assert node.runtime is not None and node.runtime.implementation == "fake-go-libp2p"
        for st in states:  # what the Go endpoint adds to every State
            assert st.snapshot_duration_ms > 0
            assert all(c.HasField("streams") for c in st.subsystems.connections)
        gaps = [b.instant_ts - a.instant_ts for a, b in itertools.pairwise(states)]
        assert [b.snapshot_duration_ms for b in states[1:]] == gaps
    finally:
        await session.close()
    assert proc.stop() == 0, proc.output()  # SIGTERM: the Go endpoint closes cleanly


async def test_the_observer_reads_a_go_endpoint_session_and_a_recording_of_it(
    observer: Reader, go_node: tuple[str, Proc], tmp_path: Path, procs: list[Proc]
) -> None:
    url, _ = go_node
    recordings = tmp_path / "recordings"
    recorder = start_exporter(
        ["live", "--target", f"go={url}", "--interval", "1s", "--record", str(recordings)], tmp_path / "live"
    )
    procs.append(recorder)
    frames_file = tmp_path / "session.frames"
    await ui_session(url, 8, frames_file)
    assert recorder.stop() == 0, recorder.output()  # SIGTERM: the recording is complete on disk
    (recording,) = sorted(recordings.rglob("*.libp2p.trace"))
    reports = read_session_and_recording(observer, frames_file, recording)
    for name, report in reports.items():
        seen = report["seen"]
        assert seen["dhtQueries"] > 0, (name, seen)
        assert seen["hiddenEvents"] == seen["hiddenEventsAtLateStates"], (name, seen)
    assert reports["live"]["decoded"]["state"] >= 8
    assert "fake-go-libp2p" in cli("inspect", str(recording))
