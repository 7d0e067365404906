"""Render benchmark: per-node blocks (exporter.sinks.exposition) against prometheus_client's generate_latest.

Run: /work/main/.venv/bin/python bench/bench_render.py [--states 60] [--nodes 1000] [--repeat 15]

One realistic node (the synthetic generator, 50 connections x 3 streams, churn, a 20-bucket DHT, so
the swarm/streams/traffic/dht families with their histogram buckets) is ingested through the real
pipeline; the writes its mappers make at two consecutive scrapes are recorded and replayed into each contender,
so every contender renders exactly the same samples and the mapping cost is left out of all of them.

Contenders, CPU time (time.process_time) of one call, medians over interleaved repetitions (each
repetition runs every contender once, in a rotated order, so load from other work on this shared
machine falls on all of them alike):

  changed node, ours       BlockWriter fed the writes + finish(): the block as bytes. Warm: the
                           shared line templates hold this node's label sets (it, or a node like
                           it, was rendered before); the writes alternate between two consecutive
                           scrapes so every render sees changed values. Cold: empty templates (the
                           first node of the process), so every label set is sorted and assembled
                           (the process-wide escaped-pair and count-text memos are warm)
  changed node, reference  prometheus_client families fed the writes (tests/support/reference.py) +
                           generate_latest (the path before issue 11), and
                           generate_latest alone over the prebuilt families (exposition only)
  unchanged node           CachedBlock.get with the version it already holds
  /metrics of N nodes      join() of N cached blocks, text and OpenMetrics; the reference merges
                           the same samples into prebuilt families for --reference-nodes nodes
  gzip                     the N-node text body at levels 1 and 6 (size and CPU)
"""

from __future__ import annotations

import argparse
import copy
import gc
import gzip
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.catalogue import Labelled
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.sinks.exposition import Block, BlockWriter, CachedBlock, Format, Templates, join
from tests.support.reference import MetricsWriter

Write = tuple[str, tuple[Any, ...], dict[str, Any]]


class Recorder:
    """Stands in for the mappers' output object and keeps the calls, to replay them anywhere."""

    def __init__(self, base: dict[str, str]) -> None:
        self.base = base
        self.calls: list[Write] = []

    def __getattr__(self, method: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            # Copied: the hub keeps mutating its histograms and counters as later States arrive.
            self.calls.append((method, copy.deepcopy(args), copy.deepcopy(kwargs)))

        return record


def replay(calls: list[Write], out: Any) -> None:
    for method, args, kwargs in calls:
        getattr(out, method)(*args, **kwargs)


def realistic_node(states: int, connections: int, streams: int) -> tuple[list[Write], list[Write]]:
    """The writes of two consecutive scrapes of a realistic node (after State ``states`` and the next
    one), via the real ingest and mappers: alternating them makes every render a changed node's."""
    synthetic = SyntheticNode(connections=connections, streams_per_conn=streams, buckets=20, seed=1)
    hub = build_hub()
    scrapes = []
    for i in range(states + 1):
        for msg in decode_segments(encode_segment(synthetic.state())).messages:
            hub.ingest("node-0000", msg)
        synthetic.step()
        if i >= states - 1:
            node = hub.nodes["node-0000"]
            rec = Recorder(node.base_labels)
            fresh = node.fresh()
            for sub in hub.mappers:
                if sub.always or fresh:
                    sub.collect(node.accs[sub.name], node, rec)  # type: ignore[arg-type]
            scrapes.append(rec.calls)
    return scrapes[0], scrapes[1]


def strings_size(value: object) -> int:
    """Bytes of the strings in a template entry (nested tuples of strings; markers count nothing)."""
    if isinstance(value, str):
        return sys.getsizeof(value)
    if isinstance(value, tuple):
        return sum(strings_size(v) for v in value)
    return 0


def alternate(first: list[Write], second: list[Write]) -> Callable[[], list[Write]]:
    turn = itertools.cycle((first, second))
    return lambda: next(turn)


class Listed:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def families(calls: list[Write], nodes: int) -> list[Metric]:
    out = MetricsWriter()
    for i in range(nodes):
        replay(calls, Labelled(out, {"node": f"node-{i:04d}"}))
    return out.metrics()


def block(calls: list[Write], base: dict[str, str], templates: Templates) -> Block:
    writer = BlockWriter(base, templates)
    replay(calls, writer)
    return writer.finish()


def measure(contenders: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median CPU seconds per contender, repetitions interleaved and the order rotated each time."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            gc.collect()
            start = time.process_time()
            contenders[name]()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    return (
        f"{platform.machine()}, {model}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"prometheus_client {version('prometheus_client')}"
    )


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "?"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--states", type=int, default=60, help="States ingested into the realistic node")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=1000, help="cached nodes joined into one /metrics")
    ap.add_argument("--reference-nodes", type=int, default=100, help="nodes for the generate_latest join")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print("machine:", machine())
    print("note: shared machine (other work runs beside this); /proc/loadavg at start:", loadavg())

    calls, calls_next = realistic_node(args.states, args.connections, args.streams)
    base = {"node": "node-0000"}
    one = families(calls, 1)
    warm = Templates()
    ours = block(calls, base, warm)
    for scrape in (calls, calls_next):
        check = Listed(families(scrape, 1))
        assert join([block(scrape, base, warm)]) == generate_latest(check)  # type: ignore[arg-type]
        assert join([block(scrape, base, warm)], Format.OPENMETRICS) == generate_openmetrics(check)  # type: ignore[arg-type]
    body = join([ours])
    changed = sum(a != b for a, b in zip(calls, calls_next))
    print(
        f"node: {ours.samples} samples, {len(one)} families, {len(body) / 1e3:.0f} kB text, {len(calls)} writes "
        f"per scrape, {changed} of them differ between the two consecutive scrapes used"
    )
    held = sum(len(p.text) + (len(p.om) if p.om is not p.text else 0) for p in ours.parts.values())
    print(f"memory per node: block {held / 1e3:.0f} kB")

    cached = CachedBlock(base, warm)
    cached.get(1, lambda out: replay(calls, out))
    fresh_names = (f"cold-{i:06d}" for i in itertools.count())
    warm_next, ref_next, om_next, text_next, omj_next = (alternate(calls, calls_next) for _ in range(5))
    prebuilt_next = alternate(one, families(calls_next, 1))  # type: ignore[arg-type]
    node_t = measure(
        {
            "ours: block, warm cache": lambda: block(warm_next(), base, warm),
            "ours: block, cold templates": lambda: block(calls, {"node": next(fresh_names)}, Templates()),
            "ours: block + join (text)": lambda: join([block(text_next(), base, warm)]),
            "ours: block + join (OpenMetrics)": lambda: join([block(omj_next(), base, warm)], Format.OPENMETRICS),
            "ours: unchanged (CachedBlock.get)": lambda: cached.get(1, lambda out: replay(calls, out)),
            "ref: Scoped + generate_latest": lambda: generate_latest(Listed(families(ref_next(), 1))),  # type: ignore[arg-type]
            "ref: Scoped + OpenMetrics": lambda: generate_openmetrics(Listed(families(om_next(), 1))),  # type: ignore[arg-type]
            "ref: generate_latest (prebuilt)": lambda: generate_latest(Listed(prebuilt_next())),  # type: ignore[arg-type]
        },
        args.repeat,
    )
    print(
        f"\none changed node ({ours.samples} samples; consecutive scrapes alternate), "
        f"CPU medians of {args.repeat} interleaved repetitions:"
    )
    for name, t in node_t.items():
        print(f"  {name:36s} {ms(t)}  {t / ours.samples * 1e6:7.3f} us/sample")
    print(
        "  ratios: generate_latest(prebuilt) / ours(warm) "
        f"{node_t['ref: generate_latest (prebuilt)'] / node_t['ours: block, warm cache']:.1f}x; "
        f"Scoped+generate_latest / ours(warm) "
        f"{node_t['ref: Scoped + generate_latest'] / node_t['ours: block, warm cache']:.1f}x; "
        f"same / ours(cold) {node_t['ref: Scoped + generate_latest'] / node_t['ours: block, cold templates']:.1f}x"
    )

    fleet_templates = Templates()
    blocks = [block(calls, {"node": f"node-{i:04d}"}, fleet_templates) for i in range(args.nodes)]
    template_bytes = sum(strings_size(v) for v in fleet_templates.entries.values())
    small = blocks[: args.reference_nodes]
    merged = Listed(families(calls, args.reference_nodes))
    join_repeat = max(3, args.repeat // 3)
    join_t = measure(
        {
            f"ours: join {args.nodes} (text)": lambda: join(blocks),
            f"ours: join {args.nodes} (OpenMetrics)": lambda: join(blocks, Format.OPENMETRICS),
            f"ours: join {args.reference_nodes} (text)": lambda: join(small),
            f"ref: generate_latest {args.reference_nodes} (prebuilt)": lambda: generate_latest(merged),  # type: ignore[arg-type]
        },
        join_repeat,
    )
    full = join(blocks)
    samples = sum(b.samples for b in blocks)
    print(f"\n/metrics from cached blocks, CPU medians of {join_repeat} interleaved repetitions:")
    for name, t in join_t.items():
        print(f"  {name:36s} {ms(t)}")
    print(f"  {args.nodes} nodes: {samples} samples, {len(full) / 1e6:.1f} MB text")
    print(
        f"  line templates shared by the {args.nodes} nodes: {len(fleet_templates.entries)} entries, "
        f"{template_bytes / 1e3:.0f} kB of strings"
    )

    gz_t = measure(
        {f"gzip level {lvl}": (lambda lvl=lvl: gzip.compress(full, compresslevel=lvl, mtime=0)) for lvl in (1, 6)},
        3,
    )
    print(f"\ngzip of the {args.nodes}-node text body, CPU medians of 3:")
    for lvl in (1, 6):
        size = len(gzip.compress(full, compresslevel=lvl, mtime=0))
        print(f"  level {lvl}: {ms(gz_t[f'gzip level {lvl}'])}  {size / 1e6:.2f} MB ({len(full) / size:.1f}x smaller)")
    print("\n/proc/loadavg at end:", loadavg())


if __name__ == "__main__":
    main()
