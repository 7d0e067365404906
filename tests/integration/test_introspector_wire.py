"""Our WebSocket client (exporter.sources.websocket) holding sessions with our Endpoint.

First with a plain Introspector, then with real py-libp2p hosts: the exporter's metrics, fed only
through the wire, see a forced disconnect as exactly one close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import pytest

from exporter.app.runtime import build_hub
from exporter.introspector import Endpoint, Introspector, event_type
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.options import SessionOptions
from exporter.sources.websocket import Session
from tests.support.procs import until
from tests.support.reference import HubCollector, render
from tests.support.samples import series, total

T = TypeVar("T")
FAST = SessionOptions(interval_ms=500, backoff_initial_s=0.1, backoff_max_s=0.5, heartbeat_s=1.0)


def metric(hub: Hub, name: str, node: str, **labels: str) -> float:
    """Sum of the samples of ``name`` for ``node`` whose labels include ``labels``."""
    return total(series(render(HubCollector(hub))[0]), name, node=node, **labels)


@pytest.fixture
async def plain() -> AsyncIterator[tuple[Introspector, Endpoint]]:
    intro = Introspector(name="plain")
    intro.register("runtime", lambda: pb.Runtime(implementation="plain", version="0", peer_id="12D3KooWplain"))
    intro.register("events", lambda: [event_type("PeerConnecting", {"peerId": pb.EventType.EventProperty.PEERID})])
    conns = [pb.Connection(id=b"\x01", peer_id="12D3KooWa", transport_id=b"ip4+tcp", timeline={"open_ts": 1})]
    intro.register("connections", lambda: conns)
    ep = Endpoint(intro)
    await ep.start()
    yield intro, ep
    await ep.close()


async def test_our_client_holds_a_session_with_our_endpoint(plain: tuple[Introspector, Endpoint]) -> None:
    intro, ep = plain
    hub = build_hub()
    session = Session(hub, "plain", ep.listen_addrs()[0], FAST)
    session.start()
    try:
        node = hub.node("plain")
        await until(lambda: node.runtime is not None and node.messages.get("state", 0) >= 2, 10, "runtime and states")
        assert node.runtime.implementation == "plain"
        assert node.config is not None and node.config.state_snapshot_interval_ms == 500
        assert node.fresh()
        intro.publish("PeerConnecting", {"peerId": "12D3KooWb"})
        await until(lambda: metric(hub, "libp2p_events_total", "plain", type="PeerConnecting") == 1, 5, "the event")
        assert metric(hub, "libp2p_connections", "plain", status="active") == 1
        assert ep.stats["bad_commands"] == 0 and len(ep.sessions) == 1
        # the Endpoint goes away and comes back on the same port: the client reconnects by itself
        port = ep.port
        await ep.close()
        await until(lambda: not node.up or session.stats.state != "streaming", 10, "the client to notice")
        again = Endpoint(intro, port=port)
        await again.start()
        try:
            before = node.messages.get("state", 0)
            await until(lambda: node.messages.get("state", 0) > before, 15, "states after reconnecting")
        finally:
            await again.close()
    finally:
        await session.close()


async def test_forced_disconnect_is_one_close_through_the_wire() -> None:
    pytest.importorskip("libp2p")
    from exporter.app.demo_swarm import DemoOptions, DemoSwarm
    from exporter.introspector.bridge import TrioThread

    opts = DemoOptions(nodes=5, churn_every_s=0, traffic_every_s=0, dht_every_s=0, seed=5)
    ds = DemoSwarm(opts, lambda node: None, lambda slot: None)
    thread = TrioThread(ds.main)
    await thread.start(timeout=60)
    assert thread.bridge is not None
    hub = build_hub()
    endpoints: list[Endpoint] = []
    sessions: list[Session] = []
    try:
        for slot in range(2):
            intro = Introspector(name=f"node-{slot}")
            ds.nodes[slot].introspection.register(intro, thread.bridge)
            ep = Endpoint(intro)
            await ep.start()
            endpoints.append(ep)
            s = Session(hub, f"node-{slot}", ep.listen_addrs()[0], FAST)
            s.start()
            sessions.append(s)

        def own_conns(slot: int) -> int:
            return sum(len(cs) for cs in ds.nodes[slot].host.get_network().connections.values())

        want = await thread.bridge.run(own_conns, 0)
        await until(
            lambda: metric(hub, "libp2p_connections", "node-0", status="active") == want, 15, "node-0's connections"
        )
        assert metric(hub, "libp2p_swarm_connections_closed_total", "node-0") == 0
        a, b = ds.nodes[0], ds.nodes[1]
        await thread.bridge.run_async(a.host.disconnect, b.host.get_id())
        for name in ("node-0", "node-1"):
            await until(
                lambda name=name: metric(hub, "libp2p_swarm_connections_closed_total", name) >= 1, 15, f"{name}'s close"
            )
        states = hub.node("node-0").messages["state"]
        await until(lambda: hub.node("node-0").messages["state"] >= states + 3, 10, "three more states")
        for name in ("node-0", "node-1"):
            assert metric(hub, "libp2p_swarm_connections_closed_total", name) == 1
            assert metric(hub, "libp2p_peers_disconnected_total", name) == 1
            assert metric(hub, "libp2p_events_total", name, type="PeerDisconnecting") == 1
        assert metric(hub, "libp2p_connections", "node-0", status="active") == want - 1
    finally:
        for s in sessions:
            await s.close()
        for ep in endpoints:
            await ep.close()
        await thread.stop(timeout=10)
