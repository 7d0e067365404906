"""The libp2p observer UI's own data layer reads what we write, and nothing in it throws.

The observer-toolkit's `data/` and `proto/` packages (MIT, third-party, in ../shared/vendor) run under
Node with the npm versions its lockfile pins (tests/observer/package-lock.json). They load, as the UI
does, a `generate` file, a `--record` recording of a live `demo` node and a live Endpoint session's
WebSocket frames; tests/observer/read_with_observer.js then runs every selector the UI's widgets use
over every State and Event. Each source must decode to the counts `libp2p-exporter inspect` gives,
with no selector throwing, no checksum error, no byte left over, no event content key without a
declared property, and no event hidden by a State whose snapshot_duration_ms is not its period.

Without ../shared beside the repository (a fresh clone) this module skips, saying so; CI has it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.commands import command
from exporter.protocol.framing import decode_segments
from tests.support.procs import REPO, Proc, start_exporter, wait_for

VENDOR = REPO.parent / "shared" / "vendor" / "observer-toolkit"
OBSERVER = REPO / "tests" / "observer"
PINNED = {"google-protobuf": "3.12.2", "bl": "4.0.2"}
KINDS = ("runtime", "response", "state", "event", "notice")
CMD = pb.ClientCommand

Reader = Callable[[list[dict[str, str]]], dict[str, Any]]


def _install_pinned_packages() -> Path:
    """`npm ci` in tests/observer (once per lockfile): exactly the versions the lockfile pins."""
    modules = OBSERVER / "node_modules"
    lock_hash = hashlib.sha256((OBSERVER / "package-lock.json").read_bytes()).hexdigest()
    stamp = modules / ".installed-lock-sha256"
    if not (stamp.is_file() and stamp.read_text() == lock_hash):
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to run the observer's code (Debian: nodejs npm; `make system-deps`)")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=OBSERVER,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {OBSERVER} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        stamp.write_text(lock_hash)
    for name, version in PINNED.items():
        got = json.loads((modules / name / "package.json").read_text())["version"]
        assert got == version, f"{name} {got} installed, the lockfile pins {version}"
    return modules


@pytest.fixture(scope="module")
def observer(tmp_path_factory: pytest.TempPathFactory) -> Reader:
    """A function running the observer's data layer over sources; skips without ../shared."""
    if not (VENDOR / "data" / "index.js").is_file():
        pytest.skip(
            f"the observer-toolkit's own code is not beside the repository ({VENDOR} is absent, as in a "
            "fresh clone); this check runs where ../shared is, as in CI"
        )
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to run the observer's code (Debian: nodejs; `make system-deps`)")
    modules = _install_pinned_packages()
    # The data package requires "@libp2p/observer-proto": point that name at the vendored proto/.
    links = tmp_path_factory.mktemp("observer-modules")
    (links / "@libp2p").mkdir()
    (links / "@libp2p" / "observer-proto").symlink_to(VENDOR / "proto")
    (links / "@libp2p" / "observer-data").symlink_to(VENDOR / "data")
    work = tmp_path_factory.mktemp("observer-input")

    def read(sources: list[dict[str, str]]) -> dict[str, Any]:
        spec = work / "input.json"
        spec.write_text(json.dumps({"sources": sources}))
        done = subprocess.run(
            [node, str(OBSERVER / "read_with_observer.js"), str(spec)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "NODE_PATH": os.pathsep.join([str(links), str(modules)])},
        )
        assert done.returncode == 0, f"the observer script failed:\n{done.stderr[-4000:]}"
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    return read


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def inspect_counts(path: Path) -> dict[str, int]:
    """Messages by kind, as `libp2p-exporter inspect` reports them (and it found no damage)."""
    out = cli("inspect", str(path))
    assert "damaged" not in out, out
    counts = {kind: 0 for kind in KINDS}
    for kind, n in re.findall(r"^  (runtime|response|state|event|notice)\s+(\d+)$", out, re.M):
        counts[kind] = int(n)
    return counts


def assert_read_cleanly(report: dict[str, Any], expected: dict[str, int]) -> None:
    print(json.dumps({"decoded": report["decoded"], "seen": report["seen"], "failures": report["failureCount"]}))
    assert report["failureCount"] == 0, "\n".join(report["failures"])
    assert report["consoleErrors"] == []  # e.g. "Skipped bytes ... due to checksum mismatch"
    assert report["leftoverBytes"] == 0
    assert report["undeclaredProperties"] == []
    decoded = {kind: report["decoded"][kind] for kind in KINDS}
    assert decoded == expected
    assert report["decoded"]["empty"] == 0
    seen = report["seen"]
    assert seen["connections"] > 0 and seen["streams"] > 0 and seen["dhtPeers"] > 0
    assert seen["events"] == expected["event"] > 0
    assert seen["selectorCalls"] > 10 * seen["connections"]


def test_the_observer_reads_a_generated_file(observer: Reader, tmp_path: Path) -> None:
    path = tmp_path / "synthetic.mock"
    cli("generate", str(path), "--steps", "30", "--seed", "1")
    expected = inspect_counts(path)
    assert expected["state"] == 31
    report = observer([{"name": "generate", "kind": "file", "path": str(path)}])["generate"]
    assert_read_cleanly(report, expected)
    # the case that crashed the UI is in the file, and it now reads: connections with an empty StreamList
    assert report["seen"]["connectionsWithoutStreams"] > 0
    assert report["seen"]["missingClosedConnections"] > 0
    assert report["seen"]["hiddenEvents"] == 0


def test_the_observer_reads_its_own_sample_the_same_way(observer: Reader) -> None:
    """The script against data the observer itself made: so a failure above is about our data."""
    sample = REPO / "tests" / "fixtures" / "observer-toolkit" / "sample-1min.mock"
    report = observer([{"name": "sample", "kind": "file", "path": str(sample)}])["sample"]
    assert report["failureCount"] == 0, report["failures"]
    assert {kind: report["decoded"][kind] for kind in KINDS} == inspect_counts(sample)
    assert report["seen"]["connections"] == 234 and report["seen"]["events"] == 937


async def _ui_session(url: str, states: int, frames_file: Path) -> int:
    """Speak to an Endpoint as the observer UI does; store every WebSocket message it sends."""
    frames: list[bytes] = []
    got_states = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        # protocol.md §3.8: HELLO with a config; then REQUEST RUNTIME, PUSH_ENABLE EVENTS and STATE
        await ws.send_bytes(command(1, CMD.HELLO, interval_ms=1000, retention_ms=120_000))
        await ws.send_bytes(command(2, CMD.REQUEST, CMD.RUNTIME))
        await ws.send_bytes(command(3, CMD.PUSH_ENABLE, CMD.EVENTS))
        await ws.send_bytes(command(4, CMD.PUSH_ENABLE, CMD.STATE))
        deadline = time.monotonic() + states * 1.0 + 30
        while got_states < states:
            msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.monotonic()))
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            frames.append(bytes(msg.data))
            decoded = decode_segments(msg.data)
            assert not decoded.errors
            got_states += sum(1 for m in decoded.messages if m.WhichOneof("payload") == "state")
    frames_file.write_bytes(b"".join(struct.pack("<I", len(f)) + f for f in frames))
    # The same messages as a capture file (protocol.md §4), for `inspect`: one version, then segments.
    frames_file.with_suffix(".mock").write_bytes(struct.pack("<I", 1) + b"".join(f[4:] for f in frames))
    return len(frames)


@pytest.mark.slow
async def test_the_observer_reads_a_demo_recording_and_a_live_endpoint_session(
    observer: Reader, tmp_path: Path, procs: list[Proc]
) -> None:
    pytest.importorskip("libp2p")
    demo = start_exporter(
        ["demo", "--nodes", "3", "--churn", "drop", "--churn-every", "2", "--seed", "1"], tmp_path / "demo"
    )
    procs.append(demo)
    urls = wait_for(
        lambda: re.findall(r"^  node-\d+\s+\S+\s+(ws://\S+)$", demo.output(), re.M), 60, "the demo's node list"
    )
    url = urls[0]
    recordings = tmp_path / "recordings"
    recorder = start_exporter(
        ["live", "--target", f"node0={url}", "--interval", "1s", "--record", str(recordings)], tmp_path / "live"
    )
    procs.append(recorder)
    frames_file = tmp_path / "session.frames"
    assert await _ui_session(url, 12, frames_file) > 12
    assert recorder.stop() == 0, recorder.output()  # SIGTERM: the recording is complete on disk
    demo.stop()
    (recording,) = sorted(recordings.rglob("*.libp2p.trace"))
    sources = [
        {"name": "recording", "kind": "file", "path": str(recording)},
        {"name": "live", "kind": "frames", "path": str(frames_file)},
    ]
    reports = observer(sources)
    for name, counted in (("recording", recording), ("live", frames_file.with_suffix(".mock"))):
        expected = inspect_counts(counted)
        assert expected["state"] >= 5 and expected["runtime"] >= 1, (name, expected)
        assert_read_cleanly(reports[name], expected)
    # the UI's live session: 12 States, each showing the events up to it
    assert reports["live"]["decoded"]["state"] >= 12
    assert "py-libp2p" in cli("inspect", str(recording))
