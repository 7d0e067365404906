"""The trio half of ``libp2p-exporter demo``: a real local py-libp2p swarm with a workload and churn.

N py-libp2p hosts with a Kademlia DHT run on 127.0.0.1 in one trio thread. They exchange real
traffic (echo streams that stay open for a few round trips, DHT put/get/find queries, gossipsub
messages) and churn on a pattern: a connection drops, a node leaves, a node (re)joins with a fresh
identity. ``exporter.app.demo`` gives every node an Endpoint and watches it over the wire.

py-libp2p (and trio with it) is the optional extra ``libp2p``: it is imported where it is used, so
the command line works without it.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.settings import Limits

log = logging.getLogger(__name__)

ECHO = "/libp2p-exporter/demo/echo/1.0.0"
TOPIC = "libp2p-exporter-demo"
CHURN_ACTIONS = ("drop", "leave", "join")


@dataclass
class DemoOptions:
    nodes: int = 8
    churn_every_s: float = 4.0  # 0 = no churn
    churn: tuple[str, ...] = ("drop", "leave", "join")  # cycled through, one action per period
    traffic_every_s: float = 0.5
    dht_every_s: float = 1.0
    interval_ms: int = 1000  # the exporter's State interval per node
    retention_ms: int = 30_000  # how long closed connections and streams stay in the State
    pubsub: bool = True  # gossipsub on topic TOPIC, with a message published now and then
    seed: int | None = None
    # the exporter's cap on one segment (--protocol.max-segment-bytes)
    max_segment_bytes: int = Limits.max_segment_bytes


@dataclass
class DemoNode:
    """One running host (trio side)."""

    slot: int
    host: Any
    dht: Any
    introspection: Any
    scope: Any  # trio.CancelScope that stops this node
    peer_id: str = ""
    pubsub: Any = None


class DemoSwarm:
    """The trio half: starts, connects, exercises and churns the hosts.

    ``on_up(node)`` and ``on_down(slot)`` are called on the trio thread and must not block.
    """

    def __init__(self, options: DemoOptions, on_up: Callable[[DemoNode], None], on_down: Callable[[int], None]) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.on_up = on_up
        self.on_down = on_down
        self.nodes: dict[int, DemoNode] = {}
        self.stats: Counter[str] = Counter()
        self.nursery: Any = None
        self._kv: list[str] = []
        self.tracing: Any = None  # demo_pubsub.DemoTracing: gossipsub traces to the exporter's collector

    # -- nodes ----------------------------------------------------------------------------
    async def _node(self, slot: int, *, task_status: Any) -> None:
        import multiaddr
        import trio
        from libp2p import new_host
        from libp2p.custom_types import TProtocol
        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
        from libp2p.tools.anyio_service import background_trio_service

        from exporter.introspector.libp2p_provider import Libp2pIntrospection

        host = new_host()
        # Loopback peers share one subnet: lift the per-subnet diversity cap or buckets stay tiny.
        dht = KadDHT(host, DHTMode.SERVER, max_peers_per_subnet=0)
        host.set_stream_handler(TProtocol(ECHO), _echo_handler)
        pubsub = router = None
        if self.options.pubsub:
            from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
            from libp2p.pubsub.pubsub import Pubsub

            # Created before any connection, as py-libp2p requires; loopback peers would trip the
            # eclipse protection (one subnet), so it is off here.
            router = GossipSub(
                [PROTOCOL_ID_V11],
                degree=3,
                degree_low=2,
                degree_high=4,
                heartbeat_interval=1,
                eclipse_protection_enabled=False,
            )
            pubsub = Pubsub(host, router)
        remote = (
            self.tracing.attach(f"node-{slot}", host, pubsub, TOPIC) if pubsub is not None and self.tracing else None
        )
        started = False
        try:
            with trio.CancelScope() as scope:
                async with contextlib.AsyncExitStack() as stack:
                    await stack.enter_async_context(host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]))
                    await stack.enter_async_context(background_trio_service(dht))
                    nursery = await stack.enter_async_context(trio.open_nursery())
                    if pubsub is not None and router is not None:
                        await stack.enter_async_context(background_trio_service(pubsub))
                        await stack.enter_async_context(background_trio_service(router))
                        await pubsub.wait_until_ready()
                        if remote is not None:
                            nursery.start_soon(remote.run)
                        nursery.start_soon(_drain, await pubsub.subscribe(TOPIC))
                    insp = Libp2pIntrospection(host, dht=dht, retention_ms=self.options.retention_ms)
                    insp.attach()
                    node = DemoNode(slot, host, dht, insp, scope, str(host.get_id()), pubsub)
                    self.nodes[slot] = node
                    self.stats["joins"] += 1
                    started = True
                    task_status.started(node)
                    self.on_up(node)
                    await trio.sleep_forever()
        except Exception as exc:  # host shutdown can raise (groups of) errors: contain them per node
            log.debug("node %d stopped with %r", slot, exc)
        finally:
            await _close_listeners(host)
            if self.nodes.get(slot) is not None and self.nodes[slot].host is host:
                del self.nodes[slot]
            if started:
                self.on_down(slot)

    async def start_node(self, slot: int) -> DemoNode:
        # trio-typing's Nursery.start returns Any (task_status carries the value)
        return await self.nursery.start(self._node_task, slot)  # type: ignore[no-any-return]

    async def _node_task(self, slot: int, task_status: Any) -> None:
        await self._node(slot, task_status=task_status)

    async def connect(self, a: DemoNode, b: DemoNode) -> bool:
        import trio
        from libp2p.peer.peerinfo import PeerInfo

        with trio.move_on_after(5):
            try:
                await a.host.connect(PeerInfo(b.host.get_id(), b.host.get_addrs()))
                await a.dht.add_peer(b.host.get_id(), skip_server_mode_check=True)
                await b.dht.add_peer(a.host.get_id(), skip_server_mode_check=True)
                return True
            except Exception as exc:
                self.stats["connect_errors"] += 1
                log.debug("connect %d -> %d failed: %r", a.slot, b.slot, exc)
        return False

    async def join(self, slot: int) -> DemoNode:
        """Start a node in ``slot`` and connect it to up to three live nodes."""
        node = await self.start_node(slot)
        others = [n for s, n in self.nodes.items() if s != slot]
        for other in self.rng.sample(others, min(3, len(others))):
            await self.connect(node, other)
        return node

    # -- the trio main ----------------------------------------------------------------------
    async def main(self, task_status: Any) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for slot in range(self.options.nodes):
                await self.join(slot)
            task_status.started(self)
            if self.options.traffic_every_s > 0:
                nursery.start_soon(self._traffic_loop)
            if self.options.dht_every_s > 0:
                nursery.start_soon(self._dht_loop)
            if self.options.churn_every_s > 0 and self.options.churn:
                nursery.start_soon(self._churn_loop)

    async def _traffic_loop(self) -> None:
        import trio

        while True:
            await trio.sleep(self.options.traffic_every_s)
            live = list(self.nodes.values())
            for node in live:
                peers = [n for n in live if n is not node]
                if peers:
                    self.nursery.start_soon(self._echo, node, self.rng.choice(peers))
            publishers = [n for n in live if n.pubsub is not None]
            if publishers and self.rng.random() < 0.5:
                self.nursery.start_soon(self._publish, self.rng.choice(publishers))

    async def _publish(self, node: DemoNode) -> None:
        import trio

        with trio.move_on_after(5):
            try:
                await node.pubsub.publish(TOPIC, self.rng.randbytes(self.rng.randint(32, 1024)))
                self.stats["published"] += 1
            except Exception as exc:
                self.stats["publish_errors"] += 1
                log.debug("publish on %d: %r", node.slot, exc)

    async def _echo(self, node: DemoNode, peer: DemoNode) -> None:
        """Open an echo stream, do a few round trips over a few seconds, close it."""
        import trio
        from libp2p.peer.peerinfo import PeerInfo

        rounds = self.rng.randint(1, 6)
        size = self.rng.randint(64, 8192)
        with trio.move_on_after(10):
            try:
                await node.host.connect(PeerInfo(peer.host.get_id(), peer.host.get_addrs()))
                stream = await node.host.new_stream(peer.host.get_id(), [ECHO])
                self.stats["streams"] += 1
                try:
                    for _ in range(rounds):
                        payload = self.rng.randbytes(size)
                        await stream.write(payload)
                        got = 0
                        while got < size:
                            chunk = await stream.read(size - got)
                            if not chunk:
                                break
                            got += len(chunk)
                        await trio.sleep(0.5)
                finally:
                    await stream.close()
            except Exception as exc:
                self.stats["stream_errors"] += 1
                log.debug("echo %d -> %d: %r", node.slot, peer.slot, exc)

    async def _dht_loop(self) -> None:
        import trio

        while True:
            await trio.sleep(self.options.dht_every_s)
            live = list(self.nodes.values())
            if len(live) < 2:
                continue
            node = self.rng.choice(live)
            self.nursery.start_soon(self._dht_query, node, live)

    async def _dht_query(self, node: DemoNode, live: list[DemoNode]) -> None:
        import trio

        action = self.rng.choice(("put", "get", "find"))
        with trio.move_on_after(10):
            try:
                if action == "put" or not self._kv:
                    key = f"demo-{self.rng.randrange(1 << 30):x}"
                    await node.dht.put_value(key, self.rng.randbytes(32))
                    self._kv = [*self._kv[-63:], key]
                elif action == "get":
                    await node.dht.get_value(self.rng.choice(self._kv))
                else:
                    target = self.rng.choice([n for n in live if n is not node])
                    await node.dht.find_peer(target.host.get_id())
                self.stats["dht_queries"] += 1
            except Exception as exc:
                self.stats["dht_errors"] += 1
                log.debug("dht %s on %d: %r", action, node.slot, exc)

    async def _churn_loop(self) -> None:
        import trio

        step = 0
        while True:
            await trio.sleep(self.options.churn_every_s)
            action = self.options.churn[step % len(self.options.churn)]
            step += 1
            with contextlib.suppress(Exception):
                await self.churn(action)

    async def churn(self, action: str) -> str:
        """One churn action; returns what happened (for logs and tests)."""
        live = list(self.nodes.values())
        if action == "drop":
            candidates = [(n, pid) for n in live for pid in list(n.host.get_network().connections)]
            if not candidates:
                return "drop: no connection"
            node, peer = self.rng.choice(candidates)
            await node.host.disconnect(peer)
            self.stats["drops"] += 1
            return f"drop: node-{node.slot} closed its connection to {str(peer)[-8:]}"
        if action == "leave":
            if len(live) <= 2:
                return "leave: too few nodes"
            node = self.rng.choice(live)
            node.scope.cancel()
            self.stats["leaves"] += 1
            return f"leave: node-{node.slot}"
        if action == "join":
            free = [s for s in range(self.options.nodes) if s not in self.nodes]
            if not free:
                return "join: swarm full"
            node = await self.join(self.rng.choice(free))
            return f"join: node-{node.slot} as {node.peer_id[-8:]}"
        raise ValueError(f"unknown churn action {action!r}; choose from {', '.join(CHURN_ACTIONS)}")


async def _close_listeners(host: Any) -> None:
    """Close the host's TCP listeners, which cancelling the host does not reach.

    py-libp2p runs each listener in a trio system task; without ``close()`` a stopped node keeps its
    port open and its whole host alive (a leak per node that leaves). Shielded and bounded, so a
    stop or Ctrl-C still ends promptly.
    """
    import trio

    with trio.CancelScope(deadline=trio.current_time() + 1.0, shield=True):
        for listener in list(getattr(host.get_network(), "listeners", {}).values()):
            try:
                await listener.close()
            except Exception as exc:
                log.debug("closing a listener failed: %r", exc)


async def _drain(subscription: Any) -> None:
    """Receive the topic's messages (and drop them): a subscriber that keeps up."""
    while True:
        await subscription.get()


async def _echo_handler(stream: Any) -> None:
    try:
        while True:
            data = await stream.read(65536)
            if not data:
                break
            await stream.write(data)
    except Exception:
        pass
    finally:
        with contextlib.suppress(Exception):
            await stream.close()
