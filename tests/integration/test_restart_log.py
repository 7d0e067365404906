"""Issue 25, item 6: a node announcing a new peer id in every Runtime, over a real WebSocket session,
is counted as a restart each time but logged once (then summarised), not once per Runtime."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pytest

from exporter.app.runtime import build_hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer, segment
from tests.support.live import FAST
from tests.support.procs import until

START_MS = int(time.time() * 1000)


def _msg(**fields: object) -> pb.ServerMessage:
    msg = pb.ServerMessage(**fields)  # type: ignore[arg-type]
    msg.version.version = 1
    return msg


def new_identity_every_tick(tick: int) -> Sequence[bytes]:
    runtime = _msg(runtime=pb.Runtime(implementation="shifty", version="1", platform="py", peer_id=f"QmPeer{tick}"))
    state = _msg(state=pb.State(instant_ts=START_MS + 100 * tick, start_ts=START_MS))
    return [segment(runtime), segment(state)]


async def test_a_new_peer_id_in_every_runtime_is_logged_once(
    server: IntrospectServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.pipeline.hub")
    server.add("", script=new_identity_every_tick)
    hub = build_hub(live=True)
    session = Session(hub, "shifty", server.url(), FAST)
    session.start()
    try:
        await until(lambda: hub.nodes["shifty"].restarts >= 30, 30.0, "30 restarts")
    finally:
        await session.close()
    lines = [r.getMessage() for r in caplog.records if "restart detected" in r.getMessage()]
    assert len(lines) == 1, lines[:5]
