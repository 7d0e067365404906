"""Shared fixtures, and each test's tier marker. Real servers come from tests/support/procs.py."""

from __future__ import annotations

import os
import subprocess
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support.go_tools import go_tools  # noqa: F401 - a session fixture: the Go commands, built once
from tests.support.introspect_server import IntrospectServer
from tests.support.libp2p_swarm import swarm  # noqa: F401 - a fixture: five real py-libp2p hosts
from tests.support.observer import observer  # noqa: F401 - a fixture: the observer UI's data layer
from tests.support.otlp import GrpcReceiver, HttpReceiver
from tests.support.procs import FIXTURE, Proc

CTYPES_UTIL = os.path.join("ctypes", "util.py")

# The folder a test lives in is its tier; this is the only place a tier marker is set.
TIERS = ("unit", "integration", "e2e")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test ``unit``, ``integration`` or ``e2e`` from its folder (``pytest -m unit`` selects one)."""
    for item in items:
        folder = item.path.resolve().relative_to(TESTS).parts[0]
        if folder not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test module belongs in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(folder)


@pytest.fixture(autouse=True)
def _unit_tier_starts_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier runs in process only (a fresh clone without promtool and the like passes it)."""
    if request.node.get_closest_marker("unit") is None:
        return
    start = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen[bytes], args: Any, *rest: Any, **kwargs: Any) -> None:
        # ctypes.util.find_library asks ldconfig (or gcc) when a library (py-libp2p's crypto) is first
        # imported: an import's side effect, not a process the test starts
        if any(frame.filename.endswith(CTYPES_UTIL) for frame in traceback.extract_stack()):
            return start(self, args, *rest, **kwargs)
        raise AssertionError(f"a unit test started a process ({args!r}): it belongs in tests/integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


# CI runs the property tests with a fixed seed so that a run is reproducible; locally they explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def fixture_path() -> Path:
    if not FIXTURE.exists():
        pytest.fail(f"fixture missing from the repository: {FIXTURE}")
    return FIXTURE


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Append started processes here; they are stopped after the test, logs kept on failure."""
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """An OTLP/HTTP receiver in the test process."""
    r = HttpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    """An OTLP/gRPC receiver in the test process."""
    r = GrpcReceiver().start()
    yield r
    r.stop()


@pytest.fixture
async def server() -> AsyncIterator[IntrospectServer]:
    """The scripted introspection server (written from docs/protocol.md) on a free loopback port."""
    srv = IntrospectServer()
    await srv.start()
    yield srv
    await srv.stop()
