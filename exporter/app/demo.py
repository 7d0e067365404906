"""``libp2p-exporter demo``: a real local py-libp2p swarm, introspected and exported, with no setup.

The swarm (``exporter.app.demo_swarm``) runs in a trio thread. Every node has its own Introspector
and Endpoint; the exporter watches all of them through its ordinary WebSocket client
(``exporter.sources``), so the data crosses the real wire, and serves ``/metrics``. The asyncio
side (Endpoints, client, HTTP) runs on the main thread; see ``exporter.introspector.bridge`` for
how the two loops talk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.app.argtypes import Parser, positive_float, positive_int
from exporter.app.demo_pubsub import demo_tracing
from exporter.app.demo_swarm import CHURN_ACTIONS, DemoNode, DemoOptions, DemoSwarm
from exporter.app.flags import add_serving_flags, settings_from_args
from exporter.app.pubsub import PubsubWiring, wire_pubsub
from exporter.app.runtime import hub_for, serve_until_stopped
from exporter.introspector import Endpoint, Introspector
from exporter.settings import Limits
from exporter.sources.manager import SessionManager
from exporter.sources.options import SessionOptions, Target

log = logging.getLogger(__name__)


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
    pubsub: PubsubWiring | None = None  # the exporter's trace collector, which the nodes trace to
    slots: dict[int, _Slot] = field(default_factory=dict)
    manager: Any = None
    swarm: DemoSwarm | None = None
    trio_thread: Any = None
    _changes: asyncio.Queue[tuple[str, Any]] | None = None
    _worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from exporter.introspector.bridge import TrioThread  # needs trio: the optional extra libp2p

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
        self.swarm.tracing = demo_tracing(self.pubsub)
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


def options_from_args(args: argparse.Namespace, limits: Limits) -> DemoOptions:
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
        max_segment_bytes=limits.max_segment_bytes,
    )


def add_demo_flags(p: argparse.ArgumentParser) -> None:
    d = DemoOptions()
    p.add_argument("--nodes", type=positive_int, default=d.nodes, help=f"py-libp2p nodes to run (default {d.nodes})")
    churn = ",".join(d.churn)
    p.add_argument(
        "--churn",
        default=churn,
        help="churn pattern, cycled: comma-separated drop (a connection closes), leave (a node stops), "
        f"join (a stopped slot starts with a new identity); empty = none (default {churn})",
    )
    p.add_argument(
        "--churn-every",
        type=positive_float,
        default=d.churn_every_s,
        help=f"seconds between churn actions (default {d.churn_every_s:g})",
    )
    p.add_argument(
        "--interval-ms",
        type=positive_int,
        default=d.interval_ms,
        help=f"State interval the exporter asks for (default {d.interval_ms})",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for the workload and churn choices")
    p.add_argument("--no-pubsub", action="store_true", help="no gossipsub (by default every node joins one topic)")


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Register ``demo``."""
    p = sub.add_parser("demo", help="run a local py-libp2p swarm, watch it over the wire, serve /metrics")
    p.add_argument(
        "--duration", type=positive_float, default=None, help="stop after this many seconds (default: run until Ctrl-C)"
    )
    add_demo_flags(p)
    add_serving_flags(p)
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """The ``demo`` subcommand body."""
    try:
        import libp2p  # noqa: F401
    except ImportError:
        print(
            "libp2p-exporter demo needs py-libp2p: pip install 'libp2p-exporter[libp2p]' (make demo does this)",
            file=sys.stderr,
        )
        return 1
    settings = settings_from_args(args)
    try:
        options = options_from_args(args, settings.limits)
    except ValueError as exc:
        print(f"libp2p-exporter demo: {exc}", file=sys.stderr)
        return 2
    if options.nodes < 2:
        print("libp2p-exporter demo: --nodes must be at least 2", file=sys.stderr)
        return 2
    if settings.serving.log_level != "debug":
        # py-libp2p logs every failed dial and reset stream (churn makes many); keep the demo readable.
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    hub = hub_for(settings.limits)
    if options.pubsub and not settings.pubsub.listen:
        # the nodes trace gossipsub to this exporter
        settings = replace(settings, pubsub=replace(settings.pubsub, listen="/ip4/127.0.0.1/tcp/0"))
    pubsub = wire_pubsub(hub, settings.pubsub, settings.tracing)

    async def work() -> None:
        demo = Demo(options, hub, pubsub)
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
            hub,
            settings,
            work,
            description=f"demo: {options.nodes} local py-libp2p nodes",
            duration=args.duration,
            live=True,  # the nodes are watched through live sessions
            pubsub=pubsub,
        )
    )
