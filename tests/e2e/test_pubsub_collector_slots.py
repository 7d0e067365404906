"""Issue 25, item 3: peers that only hold the pubsub collector's slots cannot keep out a tracer that
sends. Real py-libp2p hosts on 127.0.0.1: 64 peer ids holding 4 idle tracer streams each (every one
of the 256 stream slots), or 300 idle raw TCP connections; a tracer that then opens a stream and
sends a batch must have it delivered within 2 s. Idle streams are reset after the idle timeout.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from exporter.introspector.pubsub_sinks import GzipBatchWriter
from exporter.protocol import pubsub_trace_pb2 as tpb
from exporter.sources.pubsub_collector import REMOTE_TRACER_PROTOCOL, TraceCollector, run_collector_host

SERVED_WITHIN_S = 2.0
LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")


class Received:
    def __init__(self) -> None:
        self.by_peer: dict[str, int] = {}

    def __call__(self, peer: str, events: list[Any]) -> None:
        self.by_peer[peer] = self.by_peer.get(peer, 0) + len(events)


async def _until(what: str, cond: Any, timeout: float) -> None:
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def _start(nursery: trio.Nursery, collector: TraceCollector) -> PeerInfo:
    cid, addrs = await nursery.start(run_collector_host, collector)
    return PeerInfo(ID.from_base58(cid), [multiaddr.Multiaddr(a) for a in addrs])


async def _send_one_batch(
    stack: contextlib.AsyncExitStack, info: PeerInfo, received: Received, streams: list[Any] | None = None
) -> float:
    """A fresh tracer host: connect, open a stream, send one batch; seconds until it was delivered.
    The stream (with its gzip writer) is kept in ``streams`` when given."""
    host = new_host()
    await stack.enter_async_context(host.run([LOCAL]))
    started = time.monotonic()
    await host.connect(info)
    stream = await host.new_stream(info.peer_id, [REMOTE_TRACER_PROTOCOL])
    event = tpb.TraceEvent(type=tpb.TraceEvent.JOIN, peerID=host.get_id().to_bytes(), timestamp=1)
    event.join.topic = "blocks"
    writer = GzipBatchWriter()
    await stream.write(writer.batch([event]))
    if streams is not None:
        streams.append((stream, writer, event, str(host.get_id())))
    me = str(host.get_id())
    with trio.move_on_after(10.0):  # well past the bound: how late it came is the finding
        while received.by_peer.get(me, 0) < 1:
            await trio.sleep(0.01)
    return time.monotonic() - started if received.by_peer.get(me) else float("inf")


def test_idle_streams_of_64_peers_do_not_keep_out_a_tracer_that_sends() -> None:
    received = Received()
    collector = TraceCollector(received)  # the defaults: 256 streams, 4 per peer

    served: list[float] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            info = await _start(nursery, collector)
            held = []
            for _ in range(64):
                host = new_host()
                await stack.enter_async_context(host.run([LOCAL]))
                await host.connect(info)
                for _ in range(4):
                    held.append(await host.new_stream(info.peer_id, [REMOTE_TRACER_PROTOCOL]))
            await _until("every slot held", lambda: collector.stats.streams_active >= 256, 30.0)
            for _ in range(3):
                served.append(await _send_one_batch(stack, info, received))
            nursery.cancel_scope.cancel()  # (a return value would be lost to the cancellation)

    trio.run(main)
    assert len(served) == 3 and all(s <= SERVED_WITHIN_S for s in served), served
    assert collector.stats.errors["evicted"] >= 3 and collector.stats.streams_refused == 0


def test_300_idle_raw_connections_do_not_keep_out_a_tracer_that_sends() -> None:
    received = Received()
    collector = TraceCollector(received)

    served: list[float] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            info = await _start(nursery, collector)
            port = int(info.addrs[0].value_for_protocol("tcp"))
            raw = []
            for _ in range(300):
                raw.append(await trio.open_tcp_stream("127.0.0.1", port))
            for sock in raw:
                stack.push_async_callback(sock.aclose)
            await trio.sleep(0.2)  # let the listener take them all
            tracers: list[Any] = []
            for _ in range(3):
                served.append(await _send_one_batch(stack, info, received, tracers))
            # An upgraded connection no longer counts as waiting: 70 more idle ones (over the 64 that
            # may wait) leave the first tracer's connection alone, and its next batch arrives.
            for _ in range(70):
                late = await trio.open_tcp_stream("127.0.0.1", port)
                stack.push_async_callback(late.aclose)
            stream, writer, event, me = tracers[0]
            await stream.write(writer.batch([event]))
            await _until("the first tracer's second batch", lambda: received.by_peer.get(me, 0) >= 2, 10.0)
            nursery.cancel_scope.cancel()  # (a return value would be lost to the cancellation)

    trio.run(main)
    assert len(served) == 3 and all(s <= SERVED_WITHIN_S for s in served), served
    assert collector.stats.errors["handshake_evicted"] >= 3


def test_an_idle_stream_is_reset_after_the_idle_timeout() -> None:
    collector = TraceCollector(Received(), idle_timeout_s=0.5)

    async def main() -> None:
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            info = await _start(nursery, collector)
            host = new_host()
            await stack.enter_async_context(host.run([LOCAL]))
            await host.connect(info)
            await host.new_stream(info.peer_id, [REMOTE_TRACER_PROTOCOL])
            await _until("the stream taken", lambda: collector.stats.streams_accepted == 1, 10.0)
            await _until("the idle stream reset", lambda: collector.stats.streams_active == 0, 10.0)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert collector.stats.errors["idle"] == 1
