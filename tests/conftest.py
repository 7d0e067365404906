"""Shared fixtures. Real servers come from tests/support/procs.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.introspect_server import IntrospectServer
from tests.support.otlp import GrpcReceiver, HttpReceiver
from tests.support.procs import FIXTURE, Proc

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
    """The scripted introspection server (written from protocol.md) on a free loopback port."""
    srv = IntrospectServer()
    await srv.start()
    yield srv
    await srv.stop()
