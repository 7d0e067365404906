"""The observer-toolkit's own data layer run under Node, shared by the tests that check our output with
it: the vendored code, the pinned npm packages, the reader fixture, and `inspect` counts to compare.

The code is in the repository (tests/observer/vendor/observer-toolkit: MIT, unmodified, its origin
and checksums beside it), so a fresh clone runs these checks as CI does."""

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
from tests.support.procs import REPO

OBSERVER = REPO / "tests" / "observer"
VENDOR = OBSERVER / "vendor" / "observer-toolkit"
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
    """A function running the observer's data layer over sources."""
    if not (VENDOR / "data" / "index.js").is_file():
        pytest.fail(f"the vendored observer-toolkit code is missing from the repository: {VENDOR}")
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


def read_session_and_recording(observer: Reader, frames_file: Path, recording: Path) -> dict[str, dict[str, Any]]:
    """The observer's data layer over a live session's frames (``ui_session``) and a ``--record``
    recording of the same node: each read cleanly, counts equal to ``inspect``'s, every closed
    connection still listed (CLOSED with its close_ts). The reports, by name, for further checks."""
    reports = observer(
        [
            {"name": "live", "kind": "frames", "path": str(frames_file)},
            {"name": "recording", "kind": "file", "path": str(recording)},
        ]
    )
    for name, counted in (("live", frames_file.with_suffix(".mock")), ("recording", recording)):
        expected = inspect_counts(counted)
        assert expected["state"] >= 5 and expected["runtime"] >= 1, (name, expected)
        assert_read_cleanly(reports[name], expected)
        assert reports[name]["seen"]["missingClosedConnections"] == 0, (name, reports[name]["seen"])
    return reports


async def ui_session(url: str, states: int, frames_file: Path, first_state: asyncio.Event | None = None) -> None:
    """The observer UI's handshake (docs/protocol.md §3.8); every WebSocket message kept as u32 length + bytes."""
    frames: list[bytes] = []
    got = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_bytes(command(1, CMD.HELLO, interval_ms=1000, retention_ms=120_000))
        await ws.send_bytes(command(2, CMD.REQUEST, CMD.RUNTIME))
        await ws.send_bytes(command(3, CMD.PUSH_ENABLE, CMD.EVENTS))
        await ws.send_bytes(command(4, CMD.PUSH_ENABLE, CMD.STATE))
        deadline = time.monotonic() + states * 1.0 + 30
        while got < states:
            msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.monotonic()))
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            frames.append(bytes(msg.data))
            decoded = decode_segments(msg.data)
            assert not decoded.errors and len(decoded.messages) == 1
            got += decoded.messages[0].WhichOneof("payload") == "state"
            if got and first_state is not None:
                first_state.set()  # events are pushed to this session from now on
    frames_file.write_bytes(b"".join(struct.pack("<I", len(f)) + f for f in frames))
    # The same messages as a capture file (docs/protocol.md §4), for `inspect`: one version, then segments.
    frames_file.with_suffix(".mock").write_bytes(struct.pack("<I", 1) + b"".join(f[4:] for f in frames))
