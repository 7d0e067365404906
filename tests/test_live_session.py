"""The WebSocket client against the scripted protocol server (tests/support/introspect_server.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.node import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.prometheus import HubCollector, render
from exporter.sources.websocket import Backoff, BoundedBuffer, Session, SessionOptions
from tests.support.introspect_server import IntrospectServer

T = TypeVar("T")
FAST = SessionOptions(
    interval_ms=100,
    stale_intervals=5,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    healthy_after_s=0.0,
    read_timeout_s=1.0,
    heartbeat_s=1.0,
    handshake_timeout_s=2.0,
)


async def until(check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def samples(hub: Hub, nodes: list[str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = render(HubCollector(hub, nodes=nodes))
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(hub: Hub, name: str, node: str = "n", **labels: str) -> float | None:
    key = (name, tuple(sorted({**labels, "node": node}.items())))
    return samples(hub).get(key)


@pytest.fixture
async def server() -> AsyncIterator[IntrospectServer]:
    srv = IntrospectServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def hub() -> Hub:
    return Hub()


async def started(hub: Hub, url: str, opts: SessionOptions = FAST) -> Session:
    session = Session(hub, "n", url, opts)
    session.start()
    return session


async def test_handshake_order_and_streaming(server: IntrospectServer, hub: Hub) -> None:
    fake = server.add("")
    session = await started(hub, server.url())
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 3, what="three states")
        cmds = [(c.command, c.source) for c in fake.commands]
        C = pb.ClientCommand
        assert cmds[:4] == [
            (C.HELLO, C.STATE),
            (C.REQUEST, C.RUNTIME),
            (C.PUSH_ENABLE, C.EVENTS),
            (C.PUSH_ENABLE, C.STATE),
        ]
        assert fake.commands[0].config.state_snapshot_interval_ms == 100
        assert fake.commands[0].config.retention_period_ms == 120000
        ids = [c.id for c in fake.commands]
        assert len(set(ids)) == len(ids) and ids == sorted(ids)
        assert session.stats.state == "streaming"
        assert session.stats.effective_interval_ms == 100
        assert hub.nodes["n"].runtime is not None and hub.nodes["n"].runtime.peer_id == fake.data.peer_id
        assert value(hub, "libp2p_exporter_up") == 1.0
        assert value(hub, "libp2p_exporter_session_state", state="streaming") == 1.0
        assert (value(hub, "libp2p_connections", status="open") or 0) >= 0
        assert any(k[0] == "libp2p_peers" for k in samples(hub))
    finally:
        await session.close()
    assert session.stats.state == "closed"


def test_backoff_grows_caps_and_resets() -> None:
    import random

    b = Backoff(0.5, 4.0, 2.0, 0.2, random.Random(1))
    delays = [b.next() for _ in range(8)]
    assert 0.4 <= delays[0] <= 0.6
    assert delays[2] > delays[0]
    assert all(d <= 4.0 for d in delays) and delays[-1] >= 3.2
    b.reset()
    assert b.next() <= 0.6


async def test_bounded_buffer_drops_events_first() -> None:
    from collections import Counter

    dropped: Counter[str] = Counter()
    buf = BoundedBuffer(3, dropped)
    ev = pb.ServerMessage()
    ev.event.type.name = "X"
    st = pb.ServerMessage()
    st.state.instant_ts = 1
    for _ in range(3):
        buf.put(ev)
    buf.put(ev)  # full: the new event goes
    buf.put(st)  # full: the oldest entry makes room for the State
    assert len(buf) == 3 and dropped == Counter(event=2)
    assert buf.take()[-1].WhichOneof("payload") == "state"
