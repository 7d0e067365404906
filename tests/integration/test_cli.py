"""The command line as a user runs it, in a subprocess: `inspect` on good, damaged and unreadable
files, and one-line errors (no traceback) for a user's mistakes."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.generator import SyntheticNode
from exporter.sources.capture import write_capture
from tests.support.procs import REPO


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_inspect_fixture(fixture_path: Path) -> None:
    res = run_cli("inspect", str(fixture_path))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "969 messages" in out
    assert "state     30" in out and "event     937" in out
    assert "go-libp2p" in out and "time span: 59.9 s" in out
    assert "last state: 10 connections (4 open), 4 peers, 96 streams, DHT 104 peers in 6 buckets" in out


def test_inspect_damaged_file_reports_offsets(fixture_path: Path, tmp_path: Path) -> None:
    raw = bytearray(fixture_path.read_bytes())
    raw[1000] ^= 0xFF
    struct.pack_into("<I", raw, 4 + 4, 0xFFFFFFFF)  # first segment's length: hostile
    path = tmp_path / "damaged.mock"
    path.write_bytes(bytes(raw))
    res = run_cli("inspect", str(path))
    assert res.returncode == 0
    assert "skipped" in res.stdout and "offset 4: oversized" in res.stdout
    assert "state     30" in res.stdout  # no State lost: the damage hit the Runtime and one event


def test_inspect_unreadable_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "junk.mock"
    path.write_bytes(b"\x01\x00\x00\x00" + b"\xff" * 100)
    res = run_cli("inspect", str(path))
    assert res.returncode == 1
    missing = run_cli("inspect", str(tmp_path / "nope.mock"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "exporter", "replay", str(tmp_path / "missing.mock")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and "no such file" in res.stderr
    capture = tmp_path / "ok.mock"  # a real capture: a file that is not one is refused before serving
    write_capture(capture, SyntheticNode(connections=2, seed=1).messages(1))
    res = subprocess.run(
        [sys.executable, "-m", "exporter", "replay", str(capture), "--web.listen-address", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "not host:port" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "replay",
            str(capture),
            "--web.telemetry-path",
            "/",
            "--web.listen-address",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # "/" is the landing page: this raised a RuntimeError traceback from aiohttp
    assert res.returncode == 2 and "--web.telemetry-path" in res.stderr and "Traceback" not in res.stderr


async def test_live_mode_without_targets_says_how_to_give_them(caplog: pytest.LogCaptureFixture) -> None:
    """With no target and /probe off, /metrics would serve only the exporter's own series forever: one hint."""
    from exporter.app.config import build
    from exporter.app.live import run_live

    caplog.set_level(logging.INFO)
    assert await run_live(build({"listen": "127.0.0.1:0"}, [], None, env={}), duration=0.2) == 0
    hints = [r.getMessage() for r in caplog.records if "--target" in r.getMessage()]
    assert len(hints) == 1 and "\n" not in hints[0], hints
    assert all(flag in hints[0] for flag in ("--target", "--config", "--probe.enable")), hints[0]
    caplog.clear()
    with_probe = build({"listen": "127.0.0.1:0", "probe_enable": True}, [], None, env={})
    assert await run_live(with_probe, duration=0.2) == 0
    assert not [r for r in caplog.records if "--target" in r.getMessage()]
