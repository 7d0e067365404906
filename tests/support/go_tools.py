"""The Go programs the tests run, built once per pytest session from producers/go.

One ``go build`` of every command the tests need into a session tmp dir (Go from the machine,
modules from the proxy as ``make go-deps`` fetched them). No Go or a failed build FAILS the tests
that asked for it: CI has Go, so a skip would hide a check CI should make.

go-libp2p-pubsub-tracer's own ``tracestat`` and ``traced`` are not among them: the Go module proxy
refuses that module (``403 Forbidden: This module version is not available``, checked with
``go install …/cmd/tracestat@latest`` and a module requiring it), so ``tracestat-oracle`` (ours,
see its doc comment) applies tracestat's definitions instead. docs/pubsub.md says so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import REPO

GO_MODULE = REPO / "producers" / "go"
COMMANDS = (
    "gossipsub-swarm",
    "tracestat-oracle",
    "introspect-fake",
    "introspect-node",
    "introspect-swarm",
    "loopback-peers",
)


def build_go_tools(dest: Path) -> dict[str, Path]:
    """Build every command in COMMANDS into ``dest`` with one ``go build``; fail the test on error."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: the tests of producers/go need it (CI installs it)")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [go, "build", "-o", str(dest) + "/", *(f"./cmd/{c}" for c in COMMANDS)]
    try:
        proc = subprocess.run(cmd, cwd=GO_MODULE, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)} took over 15 minutes")
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return {c: dest / c for c in COMMANDS}


@pytest.fixture(scope="session")
def go_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_go_tools(tmp_path_factory.mktemp("go-bin"))
