"""Issue 13, defect 8: everyday mistakes on the command line get one clear line and an exit code,
never a traceback, and nonsensical values are refused before anything starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.sources.capture import CaptureWriter
from exporter.sources.replay import replay
from tests.support.procs import require

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("mistakes")
    binary = d / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    capture = d / "node.mock"
    with CaptureWriter(capture) as w:
        for msg in SyntheticNode(connections=3, seed=2).messages(2):
            w.write(msg)
    junk = d / "junk.mock"
    junk.write_bytes(b"\x01\x00\x00\x00" + b"\xff" * 100)
    noperm = d / "noperm.mock"
    noperm.write_bytes(capture.read_bytes())
    noperm.chmod(0)
    return {"bin": str(binary), "capture": str(capture), "dir": str(d), "junk": str(junk), "noperm": str(noperm)}


SERVE = ["--web.listen-address", "127.0.0.1:0"]
CASES: list[tuple[str, list[str], int, str]] = [
    ("check-config binary", ["check-config", "{bin}"], 1, "not a text file"),
    ("check-config capture", ["check-config", "{capture}"], 1, "not a"),
    ("--config binary", ["--config", "{bin}"], 2, "not a text file"),
    ("--config capture", ["--config", "{capture}"], 2, "not a"),
    ("check-config directory", ["check-config", "{dir}"], 1, "cannot read"),
    ("generate into a directory", ["generate", "{dir}"], 1, "cannot write"),
    ("replay a directory", ["replay", "{dir}", *SERVE], 1, "is a directory"),
    ("replay a junk file", ["replay", "{junk}", *SERVE], 1, "no readable message"),
    ("replay negative speed", ["replay", "{capture}", "--speed", "-1", *SERVE], 2, "--speed: must not be negative"),
    ("replay negative cap", ["replay", "{capture}", "--labels.protocol-cap", "-5"], 2, "must not be negative"),
    ("replay other cap", ["replay", "{capture}", "--labels.other-cap=-1"], 2, "must not be negative"),
    ("replay port 99999", ["replay", "{capture}", "--web.listen-address", "127.0.0.1:99999"], 2, "out of range"),
    ("replay otlp timeout", ["replay", "{capture}", "--otlp.timeout", "-3"], 2, "--otlp.timeout"),
    ("generate negative steps", ["generate", "{dir}/x.mock", "--steps", "-4"], 2, "--steps: must not be negative"),
    ("demo negative duration", ["demo", "--duration", "-1"], 2, "--duration: must be positive"),
    ("demo negative churn-every", ["demo", "--churn-every", "-2"], 2, "--churn-every: must be positive"),
    (
        "live interval -1s",
        ["--target", "ws://127.0.0.1:1/introspect", "--interval", "-1s"],
        2,
        "--interval: must not be negative",
    ),
    ("live bad record size", ["--target", "ws://127.0.0.1:1/x", "--record.max-size", "lots"], 2, "--record.max-size"),
    (
        "live bad probe idle",
        ["--target", "ws://127.0.0.1:1/x", "--probe.idle-timeout", "soon"],
        2,
        "--probe.idle-timeout",
    ),
    ("live port 99999", ["--target", "ws://127.0.0.1:1/x", "--web.listen-address", ":99999"], 2, "out of range"),
    ("live stale intervals", ["--target", "ws://127.0.0.1:1/x", "--stale-intervals", "-1"], 2, "must be positive"),
]


@pytest.mark.parametrize(("argv", "code", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_gets_one_line(files: dict[str, str], argv: list[str], code: int, says: str) -> None:
    cmd = [sys.executable, "-m", "exporter", *(a.format(**files) for a in argv)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, (res.returncode, res.stderr)
    assert len(lines) == 1, res.stderr
    assert says in lines[0], lines[0]


def test_replay_of_an_unreadable_file_exits_1(files: dict[str, str]) -> None:
    path = files["noperm"]
    if os.geteuid() == 0:  # root reads a file without read permission; nobody reads offset 0 of its own memory
        path = "/proc/self/mem"
        if not os.path.exists(path):
            pytest.skip("running as root without /proc: no file root cannot read")
    cmd = [sys.executable, "-m", "exporter", "replay", path, *SERVE]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "cannot read" in res.stderr and len(res.stderr.strip().splitlines()) == 1


async def test_a_looped_replay_is_not_a_node_restart(files: dict[str, str]) -> None:
    hub = build_hub()
    passes = await replay(hub, files["capture"], node="n", speed=0, loop=True, max_passes=4)
    assert passes == 4
    assert hub.nodes["n"].restarts == 0


def test_backfill_into_a_folder_it_cannot_write_is_our_one_line(tmp_path: Path) -> None:
    """An existing, empty, unwritable output folder: our line, before any work, not promtool's raw error.

    As root (who writes anywhere) the exporter runs as nobody; otherwise the folder is made read-only."""
    shared = Path(tempfile.mkdtemp(prefix="libp2p-backfill-ro-"))  # world-readable, unlike tmp_path
    try:
        shared.chmod(0o755)
        capture, out = shared / "n.mock", shared / "blocks"
        with CaptureWriter(capture) as w:
            for msg in SyntheticNode(connections=3, seed=2).messages(2):
                w.write(msg)
        capture.chmod(0o644)
        out.mkdir(mode=0o555)
        cmd = [sys.executable, "-m", "exporter", "backfill", str(capture), "-o", str(out)]
        if os.geteuid() == 0:
            cmd = [require("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "--", *cmd]
        res = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": "/"}
        )
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, res.stderr
        assert len(lines) == 1 and lines[0].startswith("libp2p-exporter backfill: cannot write into"), res.stderr
        assert "promtool" not in res.stderr and not any(out.iterdir())
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """``libp2p-exporter backfill FILE --format openmetrics -o - | head -1``: the pipe closes while
    we still write; that is the reader's choice, not an error to print a traceback for."""
    cap = tmp_path / "n.mock"
    node = SyntheticNode(connections=20, seed=3)
    with CaptureWriter(cap) as w:
        w.write(node.runtime())
        for _ in range(30):
            node.step()
            w.write(node.state())
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "backfill", str(cap), "--format", "openmetrics", "-o", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline()  # one line, then the reader goes away
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
