"""Liveness is the node's: a session is stalled only when the node is silent on its socket, never
because the exporter has not yet got round to what the node sent (issue 20, item 3)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from exporter.app.runtime import build_hub
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer, ServerThread
from tests.support.live import FAST
from tests.support.procs import until
from tests.support.samples import hub_series
from tests.support.samples import value as sample_value


def value(hub: Hub, name: str, **labels: str) -> float | None:
    return sample_value(hub_series(hub), name, node="n", **labels)


@pytest.fixture
def threaded_server() -> Iterator[IntrospectServer]:
    """A node on a loop of its own, so it keeps sending while the exporter's loop is blocked."""
    srv = IntrospectServer()
    with ServerThread(srv):
        yield srv


class SlowHub:
    """The hub, with an ingest that holds the event loop (an exporter far behind its nodes)."""

    def __init__(self, hub: Hub, block_s: float) -> None:
        self.hub = hub
        self.block_s = block_s
        self.blocked = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.hub, name)

    def ingest(self, name: str, msg: pb.ServerMessage) -> object:
        if msg.WhichOneof("payload") == "state":
            self.blocked += 1
            time.sleep(self.block_s)  # on the loop's thread: nothing else runs meanwhile
        return self.hub.ingest(name, msg)


async def test_a_blocked_ingest_never_tears_a_talking_node_down(threaded_server: IntrospectServer) -> None:
    fake = threaded_server.add("")
    hub = build_hub(live=True)
    slow = SlowHub(hub, block_s=0.8)
    # Every State blocks the loop for 0.8 s, longer than the read timeout (0.5 s) and the pong wait
    # (0.15 s): both timers are overdue each time the loop comes back, while the node sent every 100 ms.
    opts = replace(FAST, read_timeout_s=0.5, heartbeat_s=0.3)
    session = Session(slow, "n", threaded_server.url(), opts)  # type: ignore[arg-type]
    session.start()
    try:
        await until(lambda: slow.blocked >= 6, timeout=30, what="six blocking ingests")
        assert session.stats.failures.total() == 0, session.stats.failures
        assert session.stats.established == 1 and fake.connects == 1
        # Meanwhile the node sent ~8 States per ingest: the older ones were superseded unparsed.
        shed = session.stats.shed["state"]
        assert shed >= 5 and session.stats.dropped["state"] >= shed, session.stats
        assert value(hub, "libp2p_exporter_session_shed_before_parse_total", kind="state") == shed
    finally:
        await session.close()


async def test_a_silent_node_is_still_found_stalled(threaded_server: IntrospectServer) -> None:
    fake = threaded_server.add("")
    hub = build_hub(live=True)
    session = Session(hub, "n", threaded_server.url(), replace(FAST, read_timeout_s=0.5, heartbeat_s=None))
    session.start()
    try:
        await until(lambda: hub.nodes["n"].messages.get("state", 0) >= 1, what="a state")
        fake.mode = "stall"
        await until(lambda: session.stats.failures["stalled"] >= 1, what="the silent node found stalled")
    finally:
        await session.close()


def test_a_state_waiting_in_the_exporters_queue_keeps_the_node_fresh() -> None:
    hub = build_hub(live=True)
    node = hub.node("n")
    node.stale_after_s = 3.0
    node.last_step = object()  # type: ignore[assignment]  # seen once
    node.last_snapshot_wall = 100.0  # the last State the pipeline got to
    assert not node.fresh(now=110.0)
    node.last_state_arrived_wall = 108.0  # a newer one arrived and waits its turn
    assert node.fresh(now=110.0)
    assert not node.fresh(now=112.0)  # the node itself silent for 4 s: stale
