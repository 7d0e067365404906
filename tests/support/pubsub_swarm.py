"""A real py-libp2p gossipsub swarm on 127.0.0.1 whose nodes trace to a collector and to files.

``run_traced_swarm`` (trio) starts a collector host and ``n`` gossipsub nodes. Every node's
PubsubTracer feeds a tee: the remote tracer (a real libp2p stream to the collector), a PB tracer
file, a JSON tracer file and a traced-style gzip file. The nodes connect in a ring, subscribe, wait
for their meshes, publish, reject one message by validator, and one node leaves the topic. Then the
tracers stop (flushing their last batch and closing the gzip stream) and the run waits, with a
deadline that fails loudly, until the collector holds every event that was emitted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from exporter.introspector.pubsub_sinks import JSONFileSink, PBFileSink, RemoteTracer, TracedFileSink
from exporter.introspector.pubsub_tracer import PubsubTracer
from exporter.protocol.pubsub_codec import TraceEvent
from exporter.sources.pubsub_collector import TraceCollector, run_collector_host

TOPIC = "blocks"
BAD = b"reject-me"


@dataclass
class SwarmRun:
    collected: list[TraceEvent] = field(default_factory=list)
    emitted: list[TraceEvent] = field(default_factory=list)
    files: dict[str, list[Path]] = field(default_factory=dict)
    peer_ids: list[bytes] = field(default_factory=list)
    hooks: list[list[str]] = field(default_factory=list)
    published: int = 0
    received: int = 0
    collector: TraceCollector | None = None
    remotes: list[RemoteTracer] = field(default_factory=list)


def _tee(*sinks: Callable[[TraceEvent], None]) -> Callable[[TraceEvent], None]:
    def sink(event: TraceEvent) -> None:
        for s in sinks:
            s(event)

    return sink


async def _wait(what: str, cond: Callable[[], bool], timeout: float) -> None:
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def run_traced_swarm(
    tmp: Path,
    *,
    n: int = 3,
    messages: int = 6,
    spacing: float = 0.05,
    timeout: float = 60.0,
    collector: str | None = None,
) -> SwarmRun:
    """``collector``: a ``/p2p/`` address of a collector already running (an exporter's
    ``--pubsub.listen``) to trace to instead of one of the run's own; the run then waits until
    the remote tracers have sent every event, not until a collector holds them."""
    run = SwarmRun()
    run.files = {"pb": [], "json": [], "gzip": []}
    with trio.fail_after(timeout):
        async with trio.open_nursery() as outer:
            if collector is None:
                run.collector = TraceCollector(lambda peer, events: run.collected.extend(events))
                cid, caddrs = await outer.start(run_collector_host, run.collector)
                collector_info = PeerInfo(ID.from_base58(cid), [multiaddr.Multiaddr(a) for a in caddrs])
            else:
                addr = multiaddr.Multiaddr(collector)
                peer = ID.from_base58(addr.value_for_protocol("p2p"))
                collector_info = PeerInfo(peer, [addr.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer}"))])
            async with contextlib.AsyncExitStack() as stack:
                nodes: list[dict[str, Any]] = []
                tracer_scope = trio.CancelScope()
                tracer_nursery = await stack.enter_async_context(trio.open_nursery())
                for i in range(n):
                    host = new_host()
                    router = GossipSub(
                        [PROTOCOL_ID_V11],
                        degree=2,
                        degree_low=1,
                        degree_high=3,
                        heartbeat_interval=0.5,
                        eclipse_protection_enabled=False,
                    )
                    pubsub = Pubsub(host, router)
                    files = [
                        PBFileSink(tmp / f"n{i}.pb"),
                        JSONFileSink(tmp / f"n{i}.json"),
                        TracedFileSink(tmp / f"n{i}.pb.gz"),
                    ]
                    for kind, f in zip(("pb", "json", "gzip"), files):
                        run.files[kind].append(Path(f._fh.name))
                        stack.callback(f.close)
                    remote = RemoteTracer(host, collector_info, batch_window=0.2, retry_s=0.5)
                    run.remotes.append(remote)
                    tracer = PubsubTracer(pubsub, _tee(run.emitted.append, remote, *files))
                    run.hooks.append(tracer.attach())
                    await stack.enter_async_context(host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]))
                    await stack.enter_async_context(background_trio_service(pubsub))
                    await stack.enter_async_context(background_trio_service(router))
                    await pubsub.wait_until_ready()
                    run.peer_ids.append(host.get_id().to_bytes())
                    nodes.append({"host": host, "pubsub": pubsub, "router": router, "tracer": tracer})

                async def run_remotes() -> None:
                    with tracer_scope:
                        async with trio.open_nursery() as nursery:
                            for remote in run.remotes:
                                nursery.start_soon(remote.run)

                tracer_nursery.start_soon(run_remotes)
                # the last node rejects one message by validator
                nodes[-1]["pubsub"].set_topic_validator(TOPIC, lambda peer, msg: msg.data != BAD, False)
                subs = [await node["pubsub"].subscribe(TOPIC) for node in nodes]
                for i in range(n):  # a ring
                    a, b = nodes[i]["host"], nodes[(i + 1) % n]["host"]
                    await a.connect(PeerInfo(b.get_id(), b.get_addrs()))
                # a full mesh (D=2 of 2 peers) makes forwarding, hence duplicates, certain
                await _wait(
                    "every node to mesh with every other",
                    lambda: all(len(node["router"].mesh.get(TOPIC, ())) == n - 1 for node in nodes),
                    20,
                )
                for k in range(messages):
                    data = BAD if k == messages // 2 else f"msg-{k}".encode()
                    await nodes[k % n]["pubsub"].publish(TOPIC, data)
                    run.published += 1
                    await trio.sleep(spacing)

                async def drain(sub: Any, expect: int) -> None:
                    for _ in range(expect):
                        await sub.get()
                        run.received += 1

                with trio.move_on_after(15):
                    async with trio.open_nursery() as nursery:
                        for i, sub in enumerate(subs):
                            nursery.start_soon(drain, sub, messages - (1 if i == n - 1 else 0))
                await nodes[0]["pubsub"].unsubscribe(TOPIC)
                await trio.sleep(0.2)
                tracer_scope.cancel()  # the remote tracers send their last batch and close the gzip stream
                if run.collector is not None:
                    await _wait(
                        "the collector to hold every emitted event", lambda: len(run.collected) >= len(run.emitted), 20
                    )
                else:
                    await _wait(
                        "the remote tracers to send every emitted event",
                        lambda: sum(r.sent_events for r in run.remotes) >= len(run.emitted),
                        20,
                    )
                outer.cancel_scope.cancel()
    return run
