"""The observer UI's data layer reads a real go-libp2p host's live session and a recording of it.

producers/go/cmd/introspect-swarm runs go-libp2p hosts with kad-dht, gossipsub and churn, each
introspected by package introspect (with its probe and the DHT and pubsub providers). One host is
read as the observer UI reads it (its handshake, every WebSocket message kept) while an exporter
records it with ``--record``; the vendored observer-toolkit data layer then runs every selector
the UI's widgets use over both, with no failure (tests/support/observer.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.observer import (
    Reader,
    cli,
    read_session_and_recording,
    ui_session,
)
from tests.support.procs import Proc, spawn, start_exporter, wait_for

READY = re.compile(r"^go-0=(ws://127\.0\.0\.1:\d+/introspect)$", re.M)


async def test_the_observer_reads_a_go_host_session_and_a_recording_of_it(
    observer: Reader, go_tools: dict[str, Path], tmp_path: Path, procs: list[Proc]
) -> None:
    swarm = spawn(
        [str(go_tools["introspect-swarm"]), "-n", "3", "-churn", "1s", "-duration", "120s"],
        tmp_path / "go",
        "introspect-swarm",
        0,
    )
    procs.append(swarm)
    url = wait_for(lambda: (m := READY.search(swarm.output())) and m.group(1), 60, "the Go swarm's URLs")
    recordings = tmp_path / "recordings"
    recorder = start_exporter(
        ["live", "--target", f"go-0={url}", "--interval", "1s", "--record", str(recordings)], tmp_path / "live"
    )
    procs.append(recorder)
    frames_file = tmp_path / "session.frames"
    await ui_session(url, 10, frames_file)
    assert recorder.stop() == 0, recorder.output()  # SIGTERM: the recording is complete on disk
    assert swarm.stop() == 0, swarm.output()
    (recording,) = sorted(recordings.rglob("*.libp2p.trace"))
    reports = read_session_and_recording(observer, frames_file, recording)
    for name, report in reports.items():
        seen = report["seen"]
        assert seen["hiddenEvents"] == seen["hiddenEventsAtLateStates"], (name, seen)
    assert reports["live"]["decoded"]["state"] >= 10
    assert "go-libp2p" in cli("inspect", str(recording))
