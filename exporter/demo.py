"""``libp2p-exporter demo``: a real local py-libp2p swarm, introspected and exported, with no setup.

N py-libp2p hosts with a Kademlia DHT run on 127.0.0.1 in one trio thread. They exchange real
traffic (echo streams that stay open for a few round trips, DHT put/get/find queries) and churn on
a pattern: a connection drops, a node leaves, a node (re)joins with a fresh identity. Every node
has its own Introspector and Endpoint; the exporter watches all of them through its ordinary
WebSocket client (``exporter.sources.websocket``), so the data crosses the real wire, and serves
``/metrics``. The asyncio side (Endpoints, client, HTTP) runs on the main thread; see
``exporter.introspector.bridge`` for how the two loops talk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporter.protocol.framing import DEFAULT_MAX_SEGMENT

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
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT  # the exporter's cap on one segment (--protocol.max-segment-bytes)


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
        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
        from libp2p.tools.anyio_service import background_trio_service

        from exporter.introspector.libp2p_provider import Libp2pIntrospection

        host = new_host()
        # Loopback peers share one subnet: lift the per-subnet diversity cap or buckets stay tiny.
        dht = KadDHT(host, DHTMode.SERVER, max_peers_per_subnet=0)
        host.set_stream_handler(ECHO, _echo_handler)
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
                    if pubsub is not None:
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

    with trio.move_on_after(1.0, shield=True):
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


@dataclass
class _Slot:
    port: int = 0
    endpoint: Any = None
    introspector: Any = None
    peer_id: str = ""


@dataclass
class Demo:
    """The asyncio half: an Endpoint per node, the exporter's WebSocket client watching each one."""

    options: DemoOptions
    hub: Any
    slots: dict[int, _Slot] = field(default_factory=dict)
    manager: Any = None
    swarm: DemoSwarm | None = None
    trio_thread: Any = None
    _changes: asyncio.Queue[tuple[str, Any]] | None = None
    _worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from exporter.introspector.bridge import TrioThread
        from exporter.sources.websocket import SessionManager, SessionOptions

        loop = asyncio.get_running_loop()
        self._changes = asyncio.Queue()
        changes = self._changes

        def up(node: DemoNode) -> None:
            loop.call_soon_threadsafe(changes.put_nowait, ("up", node))

        def down(slot: int) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(changes.put_nowait, ("down", slot))

        self.manager = SessionManager(
            self.hub,
            SessionOptions(
                interval_ms=self.options.interval_ms,
                backoff_initial_s=0.3,
                backoff_max_s=2.0,
                max_segment_bytes=self.options.max_segment_bytes,
            ),
            probe_idle_s=0,
        )
        self.swarm = DemoSwarm(self.options, up, down)
        from exporter.demo_pubsub import demo_tracing

        self.swarm.tracing = demo_tracing(self.hub)
        self.trio_thread = TrioThread(self.swarm.main, name="demo-swarm")
        self._worker = asyncio.create_task(self._apply_changes(), name="demo endpoints")
        await self.trio_thread.start(timeout=60)
        # every initial node is up; wait until its Endpoint serves
        deadline = loop.time() + 30
        while any(s.endpoint is None for s in self.slots.values()) or len(self.slots) < self.options.nodes:
            if loop.time() > deadline:
                raise RuntimeError("demo: the nodes' introspection endpoints did not start within 30 s")
            await asyncio.sleep(0.05)

    async def _apply_changes(self) -> None:
        assert self._changes is not None
        while True:
            kind, item = await self._changes.get()
            try:
                if kind == "up":
                    await self._node_up(item)
                else:
                    await self._node_down(item)
            except Exception:
                log.exception("demo: could not apply %s", kind)

    async def _node_up(self, node: DemoNode) -> None:
        from exporter.introspector import Endpoint, Introspector
        from exporter.sources.websocket import Target

        slot = self.slots.setdefault(node.slot, _Slot())
        intro = Introspector(name=f"node-{node.slot}")
        node.introspection.register(intro, self.trio_thread.bridge)
        endpoint = Endpoint(intro, port=slot.port)
        try:
            await endpoint.start()
        except OSError:  # the slot's old port was taken meanwhile: move, and re-point the client
            endpoint = Endpoint(intro, port=0)
            await endpoint.start()
            await self.manager.remove(f"node-{node.slot}")
        first = slot.port == 0 or slot.port != endpoint.port
        slot.port, slot.endpoint, slot.introspector, slot.peer_id = endpoint.port, endpoint, intro, node.peer_id
        if first:
            self.manager.add(
                Target(url=endpoint.listen_addrs()[0], name=f"node-{node.slot}", interval_ms=self.options.interval_ms)
            )
        log.info("demo: node-%d up as %s at %s", node.slot, node.peer_id, endpoint.listen_addrs()[0])

    async def _node_down(self, slot_no: int) -> None:
        slot = self.slots.get(slot_no)
        if slot is not None and slot.endpoint is not None:
            endpoint, slot.endpoint = slot.endpoint, None
            await endpoint.close()
            log.info("demo: node-%d left", slot_no)

    def urls(self) -> list[tuple[str, str, str]]:
        return [
            (f"node-{n}", s.peer_id, s.endpoint.listen_addrs()[0])
            for n, s in sorted(self.slots.items())
            if s.endpoint is not None
        ]

    async def stop(self) -> None:
        """Client first (no reconnect noise), then Endpoints, then the swarm; bounded in time."""
        if self.manager is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.manager.close(), 2.0)
        if self.trio_thread is not None:
            err = await self.trio_thread.stop(timeout=3.0)
            if err is not None:
                log.debug("demo swarm shutdown: %r", err)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        for slot in self.slots.values():
            if slot.endpoint is not None:
                with contextlib.suppress(Exception):
                    await slot.endpoint.close()
                slot.endpoint = None


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    churn = tuple(a.strip() for a in args.churn.split(",") if a.strip()) if args.churn else ()
    for action in churn:
        if action not in CHURN_ACTIONS:
            raise ValueError(f"unknown churn action {action!r}; choose from {', '.join(CHURN_ACTIONS)}")
    return DemoOptions(
        nodes=args.nodes,
        churn_every_s=args.churn_every,
        churn=churn,
        seed=args.seed,
        interval_ms=args.interval_ms,
        pubsub=not args.no_pubsub,
        max_segment_bytes=getattr(args, "max_segment", DEFAULT_MAX_SEGMENT),
    )


def add_demo_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=8, help="py-libp2p nodes to run (default 8)")
    p.add_argument(
        "--churn",
        default="drop,leave,join",
        help="churn pattern, cycled: comma-separated drop (a connection closes), leave (a node stops), "
        "join (a stopped slot starts with a new identity); empty = none (default drop,leave,join)",
    )
    p.add_argument("--churn-every", type=float, default=4.0, help="seconds between churn actions (default 4)")
    p.add_argument("--interval-ms", type=int, default=1000, help="State interval the exporter asks for (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="seed for the workload and churn choices")
    p.add_argument("--no-pubsub", action="store_true", help="no gossipsub (by default every node joins one topic)")


def run_demo(args: argparse.Namespace) -> int:
    """The ``demo`` subcommand body."""
    import sys

    from exporter.cli import hub_from_args, serve_until_stopped

    try:
        import libp2p  # noqa: F401
    except ImportError:
        print(
            "libp2p-exporter demo needs py-libp2p: pip install 'libp2p-exporter[libp2p]' (make demo does this)",
            file=sys.stderr,
        )
        return 1
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"libp2p-exporter demo: {exc}", file=sys.stderr)
        return 2
    if options.nodes < 2:
        print("libp2p-exporter demo: --nodes must be at least 2", file=sys.stderr)
        return 2
    if args.log_level != "debug":
        # py-libp2p logs every failed dial and reset stream (churn makes many); keep the demo readable.
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    hub = hub_from_args(args)
    if options.pubsub and not getattr(args, "pubsub_listen", None):
        args.pubsub_listen = "/ip4/127.0.0.1/tcp/0"  # the nodes trace gossipsub to this exporter

    async def work() -> None:
        demo = Demo(options, hub)
        try:
            await demo.start()
            print(f"demo: {options.nodes} py-libp2p nodes on 127.0.0.1, each introspectable:", flush=True)
            for name, peer, url in demo.urls():
                print(f"  {name}  {peer}  {url}", flush=True)
            pattern = ",".join(options.churn) or "none"
            print(f"demo: churn {pattern} every {options.churn_every_s:g}s; Ctrl-C stops", flush=True)
            await asyncio.Event().wait()
        finally:
            await demo.stop()

    return asyncio.run(
        serve_until_stopped(
            hub, args, work, description=f"demo: {options.nodes} local py-libp2p nodes", duration=args.duration
        )
    )
