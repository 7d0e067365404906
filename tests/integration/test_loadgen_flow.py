"""The bench's load generator honours the interval it is asked for (HELLO and UPDATE_CONFIG) and
declares the retention its States really have (issue 20: the bench must be able to measure it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.app.runtime import build_hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.governor import GovernorOptions
from exporter.sources.manager import SessionManager
from exporter.sources.options import Target
from tests.support.live import FAST
from tests.support.procs import free_port, until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def loadgen() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    args = [sys.executable, str(REPO / "bench" / "loadgen.py"), "--nodes", "2", "--port", str(port)]
    args += ["--horizon", "60", "--interval", "0.1", "--retention", "2", "--connections", "4", "--streams", "1"]
    args += ["--sequences", "1", "--frames-seconds", "60"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert ready["ready"] and ready["interval_ms"] == 100
    try:
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


class Times:
    def __init__(self) -> None:
        self.ts: list[int] = []

    def write(self, msg: pb.ServerMessage) -> None:
        if msg.WhichOneof("payload") == "state":
            self.ts.append(msg.state.instant_ts)

    def close(self) -> None:
        pass


async def test_the_generator_pushes_at_the_interval_asked(loadgen: tuple[int, subprocess.Popen[str]]) -> None:
    port, proc = loadgen
    hub = build_hub(live=True)
    times = {"g0": Times(), "g1": Times()}
    # always behind: the interval climbs to its ceiling (retention / 4: the margin kept, for a fixed end)
    squeezed = GovernorOptions(budget=1e-6, period_s=0.1, min_retention_margin=4.0)
    manager = SessionManager(
        hub, replace(FAST, interval_ms=100), recorder_factory=times.__getitem__, governor=squeezed, probe_idle_s=0
    )
    for i in range(2):
        manager.add(Target(url=f"ws://127.0.0.1:{port}/n/{i}/introspect", name=f"g{i}", interval_ms=100))
    try:
        sessions = list(manager.sessions.values())
        # The generator declares 2 s (what its States keep): the ceiling is 2 s / 4 = 500 ms.
        await until(
            lambda: all(s.stats.effective_retention_ms == 2000 for s in sessions), what="the declared retention"
        )
        await until(
            lambda: all(s.stats.effective_interval_ms == 500 for s in sessions), timeout=30, what="500 ms agreed"
        )
        marks = {n: len(t.ts) for n, t in times.items()}
        await until(lambda: all(len(t.ts) >= marks[n] + 4 for n, t in times.items()), timeout=30, what="4 States more")
    finally:
        await manager.close()
    for name, t in times.items():
        gaps = [b - a for a, b in zip(t.ts[marks[name] + 1 :], t.ts[marks[name] + 2 :], strict=False)]
        # Every fifth step of the 100 ms grid (a tick the generator was too late for is skipped whole).
        assert gaps and all(g % 500 == 0 for g in gaps) and 500 in gaps, (name, gaps)
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    out, _ = proc.communicate(timeout=20)
    figures = json.loads(out.strip().splitlines()[-1])["loadgen"]
    assert figures["update_configs"] >= 2 and figures["intervals_ms_at_end"] == {"500": 2}
    assert figures["retention_ms"] == 2000 and figures["serving_cpu_s"] >= 0
