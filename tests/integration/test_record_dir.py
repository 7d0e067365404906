"""Issue 13, defect 6: an unusable --record directory is refused at start; a recorder that fails
later stops recording (counted, logged once) and never stops the watching."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.app.runtime import build_hub
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.manager import SessionManager
from exporter.sources.options import Target
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer
from tests.support.live import FAST
from tests.support.procs import until
from tests.support.samples import hub_series
from tests.support.samples import value as sample_value

REPO = Path(__file__).resolve().parents[2]


def value(hub: Hub, name: str, node: str = "n", **labels: str) -> float | None:
    return sample_value(hub_series(hub), name, node=node, **labels)


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_unusable_record_directory_is_refused_at_start(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    record = str(blocker) if where == "a file" else str(blocker / "rec")
    cmd = [sys.executable, "-m", "exporter", "--target", "ws://127.0.0.1:1/x", "--record", record]
    cmd += ["--web.listen-address", "127.0.0.1:0"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "--record" in lines[0] and "Traceback" not in res.stderr, res.stderr


class FailingRecorder:
    def __init__(self) -> None:
        self.writes = 0

    def write(self, msg: pb.ServerMessage) -> None:
        self.writes += 1
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        pass


async def test_a_recorder_failing_later_stops_recording_not_watching(
    server: IntrospectServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.add("", connections=3)
    hub = build_hub(live=True)
    rec = FailingRecorder()
    session = Session(hub, "n", server.url(), FAST, recorder=rec)
    session.stats.recording = True
    caplog.set_level(logging.ERROR)
    session.start()
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 4, what="States after the failure")
        assert session.stats.state == "streaming"
        assert value(hub, "libp2p_exporter_session_recording_failures_total") == 1
    finally:
        await session.close()
    assert rec.writes == 1
    assert len([r for r in caplog.records if "recording failed" in r.getMessage()]) == 1


async def test_a_recorder_that_cannot_start_leaves_the_target_watched(server: IntrospectServer) -> None:
    server.add("", connections=3)
    hub = build_hub(live=True)

    def factory(name: str) -> FailingRecorder:
        raise PermissionError(13, "Permission denied")

    manager = SessionManager(hub, FAST, recorder_factory=factory)
    try:
        session = manager.add(Target(url=server.url(), name="n"))
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 2, what="States")
        assert session.stats.recording_failures == 1
    finally:
        await manager.close()
