"""Pubsub traces: how fast events decode (each file form) and map to metrics, and what memory the
message window costs. Speed is measured here, never asserted in tests.

    .venv/bin/python bench/bench_pubsub.py [--nodes 50] [--messages 20000]

The synthetic fleet: ``--nodes`` nodes, every message published once and delivered on every node
(plus one duplicate per delivery), with RPC events as a busy go node emits them.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.introspector.pubsub_sinks import JSONFileSink, PBFileSink, TracedFileSink
from exporter.mappers.pubsub import PubsubMetrics
from exporter.protocol.pubsub_codec import TraceEvent
from exporter.sinks.exposition import BlockWriter
from exporter.sources.pubsub_trace import read_trace_file

T = TraceEvent.Type


def fleet(nodes: int, messages: int) -> list[TraceEvent]:
    peers = [b"\x00\x24\x08\x01\x12\x20" + i.to_bytes(32, "big") for i in range(nodes)]
    out: list[TraceEvent] = []
    ts = 1_700_000_000_000_000_000
    for m in range(messages):
        origin = peers[m % nodes]
        mid = origin + m.to_bytes(8, "big")
        e = TraceEvent(type=T.PUBLISH_MESSAGE, peerID=origin, timestamp=ts)
        e.publishMessage.messageID, e.publishMessage.topic = mid, "blocks"
        out.append(e)
        for k, peer in enumerate(peers):
            d = TraceEvent(type=T.DELIVER_MESSAGE, peerID=peer, timestamp=ts + 1_000_000 * (k + 1))
            d.deliverMessage.messageID, d.deliverMessage.topic, d.deliverMessage.receivedFrom = mid, "blocks", origin
            out.append(d)
            u = TraceEvent(type=T.DUPLICATE_MESSAGE, peerID=peer, timestamp=ts + 2_000_000 * (k + 1))
            u.duplicateMessage.messageID, u.duplicateMessage.topic, u.duplicateMessage.receivedFrom = (
                mid,
                "blocks",
                origin,
            )
            out.append(u)
            r = TraceEvent(type=T.RECV_RPC, peerID=peer, timestamp=ts)
            r.recvRPC.receivedFrom = origin
            r.recvRPC.meta.messages.add(messageID=mid, topic="blocks")
            r.recvRPC.meta.control.ihave.add(topic="blocks", messageIDs=[mid])
            out.append(r)
        ts += 10_000_000
    return out


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    events = fleet(args.nodes, args.messages)
    n = len(events)
    print(f"fleet: {args.nodes} nodes, {args.messages} messages, {n} events")
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        for sink_type, name in ((PBFileSink, "pb"), (JSONFileSink, "json"), (TracedFileSink, "gzip")):
            path = Path(tmp) / f"f.{name}"
            with sink_type(path) as sink:
                for e in events:
                    sink(e)
            size = path.stat().st_size
            secs = timed(lambda p=path: read_trace_file(p), args.repeat)
            print(f"read {name:<5} {size / 1e6:7.1f} MB  {secs:6.2f} s  {n / secs / 1e3:7.0f} k events/s")

    def ingest() -> PubsubMetrics:
        m = PubsubMetrics(topics={"blocks"})
        m.ingest_all(events)
        return m

    secs = timed(ingest, args.repeat)
    print(f"map  {secs:6.2f} s  {n / secs / 1e3:7.0f} k events/s")
    m = ingest()
    secs = timed(lambda: m.collect_into(BlockWriter()), args.repeat)
    print(f"scrape {secs * 1e3:6.1f} ms")
    tracemalloc.start()
    m = ingest()
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"window: {len(m._msgs)} messages, {current / 1e6:.1f} MB held by the mapper "
        f"({current / max(1, len(m._msgs)):.0f} B per message with {args.nodes} deliverers)"
    )
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
