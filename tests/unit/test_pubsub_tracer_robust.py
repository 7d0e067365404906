"""The py-libp2p tracer degrades instead of failing: missing methods mean fewer hooks, a failing sink
costs events (counted), never the node's own call; detach restores the instance."""

from __future__ import annotations

from typing import Any

import trio

from exporter.introspector.pubsub_tracer import PubsubTracer
from exporter.protocol.pubsub_codec import TraceEvent

T = TraceEvent.Type


class Router:
    def __init__(self) -> None:
        self.mesh: dict[str, set[bytes]] = {}
        self.calls: list[str] = []

    async def join(self, topic: str) -> None:
        self.calls.append("join")
        self.mesh[topic] = set()
        self.mesh[topic].add(b"p1")
        self.mesh[topic] |= {b"p2", b"p3"}

    async def leave(self, topic: str) -> None:
        self.calls.append("leave")
        self.mesh.pop(topic, None)

    def remove_peer(self, peer: bytes) -> None:
        for members in self.mesh.values():
            members.discard(peer)


class Pubsub:
    """A Pubsub-shaped object with only some of py-libp2p's methods (an older or newer release)."""

    my_id = b"\x00\x01me"

    def __init__(self) -> None:
        self.router = Router()


def test_missing_methods_mean_fewer_hooks_and_mesh_changes_are_grafts_and_prunes() -> None:
    events: list[TraceEvent] = []
    ps = Pubsub()
    tracer = PubsubTracer(ps, events.append)
    hooks = tracer.attach()
    assert hooks == ["Router.join", "Router.leave", "Router.remove_peer", "Router.mesh"]  # no host: no RPC hook

    async def run() -> None:
        await ps.router.join("t")
        ps.router.remove_peer(b"p2")  # a peer that left: no PRUNE, as in go
        ps.router.mesh["t"].discard(b"p3")  # the heartbeat pruning: a PRUNE
        await ps.router.leave("t")

    trio.run(run)
    kinds = [
        (
            T.Name(e.type),
            getattr(
                e, {9: "join", 10: "leave", 11: "graft", 12: "prune", 5: "onClosedOutboundStream"}[e.type]
            ).SerializeToString(),
        )
        for e in events
    ]
    names = [k for k, _ in kinds]
    assert names == ["JOIN", "GRAFT", "GRAFT", "GRAFT", "ON_CLOSED_OUTBOUND_STREAM", "PRUNE", "LEAVE", "PRUNE"]
    assert ps.router.calls == ["join", "leave"] and all(e.peerID == Pubsub.my_id for e in events)
    tracer.detach()
    assert "join" not in vars(ps.router) and type(ps.router.mesh) is dict and tracer.hooks == []


def test_a_failing_sink_never_reaches_the_node() -> None:
    def broken(_: TraceEvent) -> None:
        raise OSError("disk full")

    ps = Pubsub()
    tracer = PubsubTracer(ps, broken)
    tracer.attach()
    trio.run(ps.router.join, "t")
    assert ps.router.mesh["t"] == {b"p1", b"p2", b"p3"}  # the node's own work happened
    assert tracer.errors == 4 and tracer.emitted == 0


def test_no_router_at_all() -> None:
    class Bare:
        my_id: Any = b"x"

    assert PubsubTracer(Bare(), lambda e: None).attach() == []
