"""Core pipeline benchmark: decode, mapping and one /metrics exposition of a large State.

Run: .venv/bin/python bench/bench_core.py [--connections 10000] [--streams 5] [--repeat 5]

Beside our pipeline it times two references in the same run:
  floor - protobuf parse + reading every field + prometheus_client exposing the same number of
          samples from prebuilt families (the least any exporter of this data must do);
  naive - the same parse, then labelled Gauges updated with .clear()/.set() per snapshot, then
          exposition (the pattern the Prometheus guide warns against).
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.labels import short_name
from exporter.model.multiaddr import transport_of
from exporter.pipeline.hub import Hub
from exporter.protocol import pb
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.sinks.prometheus import HubCollector, render


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def walk(msg: object) -> int:
    """Touch every set field, as the least a consumer of the snapshot must do."""
    n = 0
    for _field, value in msg.ListFields():  # type: ignore[attr-defined]
        if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))):
            for item in value:
                n += walk(item) if hasattr(item, "ListFields") else 1
        elif hasattr(value, "ListFields"):
            n += walk(value)
        else:
            n += 1
    return n


class Prebuilt:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def naive_update(registry_gauges: dict[str, Gauge], state: pb.State) -> None:
    conns, streams = registry_gauges["conns"], registry_gauges["streams"]
    conns.clear()
    streams.clear()
    by_conn: Counter[tuple[str, ...]] = Counter()
    by_stream: Counter[tuple[str, ...]] = Counter()
    for c in state.subsystems.connections:
        t = transport_of(c.endpoints.src_multiaddr, c.endpoints.dst_multiaddr)
        by_conn[
            (str(c.status), str(c.role), t, short_name(c.attribs.encryption), short_name(c.attribs.multiplexer))
        ] += 1
        for s in c.streams.streams:
            by_stream[(s.protocol, str(s.role), str(s.status))] += 1
    for labels, n in by_conn.items():
        conns.labels(*labels).set(n)
    for labels, n in by_stream.items():
        streams.labels(*labels).set(n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--streams", type=int, default=5)
    ap.add_argument("--buckets", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    node = SyntheticNode(connections=args.connections, streams_per_conn=args.streams, buckets=args.buckets, seed=1)
    first = encode_segment(node.state())
    node.step()
    second_msg = node.state()
    second = encode_segment(second_msg)
    print(f"State: {args.connections} connections x {args.streams} streams, {len(second) / 1e6:.1f} MB framed")

    decode_t = best(lambda: decode_segments(second), args.repeat)
    (decoded,) = decode_segments(second).messages

    def mapping() -> Hub:
        hub = build_hub()
        hub.ingest("n", decode_segments(first).messages[0])
        return hub

    hubs = [mapping() for _ in range(args.repeat)]
    map_times = []
    for hub in hubs:
        gc.collect()
        t = time.perf_counter()
        hub.ingest("n", decoded)
        map_times.append(time.perf_counter() - t)
    map_t = statistics.median(map_times)
    hub = hubs[0]
    collector = HubCollector(hub)
    expose_t = best(lambda: render(collector), args.repeat)
    body = render(collector)[0]
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    ours = decode_t + map_t + expose_t

    # Floor: parse + walk + expose prebuilt families with the same sample count.
    fams = collector.collect()
    floor_parse = best(lambda: walk(pb.ServerMessage.FromString(second[12:])), args.repeat)
    prebuilt = Prebuilt(list(fams))
    floor_expose = best(lambda: generate_latest(prebuilt), args.repeat)  # type: ignore[arg-type]
    floor = floor_parse + floor_expose

    # Naive: labelled gauges cleared and set per snapshot.
    registry = CollectorRegistry()
    gauges = {
        "conns": Gauge(
            "naive_connections", "x", ["status", "dir", "transport", "security", "muxer"], registry=registry
        ),
        "streams": Gauge("naive_streams", "x", ["protocol", "dir", "status"], registry=registry),
    }

    def naive() -> None:
        msg = pb.ServerMessage.FromString(second[12:])
        naive_update(gauges, msg.state)
        generate_latest(registry)

    naive_t = best(naive, args.repeat)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"machine: {platform.machine()}, {platform.processor() or '?'}, Python {platform.python_version()}")
    print(f"exposition: {samples} samples, {len(body) / 1e3:.0f} kB")
    print(
        f"ours:  decode {decode_t * 1e3:7.1f} ms  mapping {map_t * 1e3:7.1f} ms  exposition {expose_t * 1e3:6.1f} ms  = {ours * 1e3:7.1f} ms"
    )
    print(
        f"floor: parse+walk {floor_parse * 1e3:7.1f} ms  exposition {floor_expose * 1e3:6.1f} ms  = {floor * 1e3:7.1f} ms"
    )
    print(f"naive: parse + clear/set + exposition = {naive_t * 1e3:7.1f} ms")
    print(f"ratios: ours/floor {ours / floor:.2f}  ours/naive {ours / naive_t:.2f}")
    print(f"peak RSS of this process: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
