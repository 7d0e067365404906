"""Native histograms (issue 24): series per node as Prometheus stores them, bytes per scrape, render
cost and memory, for the classic ``default`` and ``lean`` profiles and for native histograms.

One ``SyntheticNode`` per size (the ``bench/series.py`` generator: peerstore on, 10 % churn per
step) is replayed through the standard hub under each configuration:

- ``default`` / ``lean``: classic buckets only; a Prometheus scrapes OpenMetrics (or text) and stores
  each sample line as a series;
- ``native`` / ``lean+native``: ``--histograms.native`` (schema 3, 160 buckets at most); a Prometheus
  with native histograms on scrapes protobuf and stores one series per histogram label combination
  (2.42 keeps only the native histogram where classic buckets came too);
- ``native+classic``: ``--histograms.native-classic`` as well: the protobuf body carries both (what a
  Prometheus >= 2.45 with ``scrape_classic_histograms`` would store is both; 2.42 stores the native).

Series are counted from the body the scraper of that configuration gets (text for classic, protobuf
decoded for native), for samples carrying the node's label. Render cost is CPU time (``process_time``)
of one changed node's block in each format, medians of interleaved repetitions; memory is the bytes
a node's cached block holds per format and the traced allocation of the hub's accumulators.

    .venv/bin/python bench/native.py                          # 50x3 (300 steps) and 2000x5 (60 steps)
    .venv/bin/python bench/native.py --reps 30 --json bench/results/native-DATE.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.histogram_profiles import FAMILIES, profile
from exporter.model.labels import Cardinality
from exporter.model.native import NativeSpec
from exporter.protocol import prometheus_metrics_pb2 as pb
from exporter.protocol.varint import iter_delimited
from exporter.sinks.exposition import Format
from exporter.sinks.prometheus import Exposition

CONFIGS: dict[str, tuple[str, NativeSpec | None]] = {
    "default": ("default", None),
    "lean": ("lean", None),
    "native": ("default", NativeSpec()),
    "lean+native": ("lean", NativeSpec()),
    "native+classic": ("default", NativeSpec(classic=True)),
}


def decode(body: bytes) -> list[pb.MetricFamily]:
    families = []
    for payload in iter_delimited(body):
        family = pb.MetricFamily()
        family.ParseFromString(payload)
        families.append(family)
    return families


def stored_from_protobuf(body: bytes, node: str, *, keep_classic: bool) -> Counter[str]:
    """Series a protobuf scrape stores, by family: a native histogram is one series; classic buckets
    (+Inf), count and sum one each (only counted when ``keep_classic`` or no native part came)."""
    out: Counter[str] = Counter()
    for family in decode(body):
        for metric in family.metric:
            if not any(p.name == "node" and p.value == node for p in metric.label):
                continue
            if family.type in (pb.HISTOGRAM, pb.GAUGE_HISTOGRAM):
                h = metric.histogram
                native = bool(h.positive_span or h.negative_span or h.zero_threshold)
                n = 1 if native else 0
                if not native or (keep_classic and h.bucket):
                    n += len(h.bucket) + (0 if h.bucket and h.bucket[-1].upper_bound == float("inf") else 1) + 2
                out[family.name] += n
            else:
                out[_base(family.name)] += 1
    return out


def _base(name: str) -> str:
    for suffix in ("_bucket", "_gcount", "_gsum", "_total"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def stored_from_text(body: bytes, node: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in body.decode().splitlines():
        if line.startswith("#") or f'node="{node}"' not in line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        for suffix in ("_count", "_sum"):
            if name.endswith(suffix) and name[: -len(suffix)] in FAMILIES:
                name = name[: -len(suffix)]
        out[_base(name)] += 1
    return out


def build(config: str, connections: int, streams: int, steps: int, trace: bool = True) -> tuple[Exposition, int]:
    """The hub after ``steps`` States, and the bytes allocated and still held after the replay (the
    hub's accumulators and the generator; traced, which slows the replay severalfold; 0 untraced)."""
    name, native = CONFIGS[config]
    if not trace:
        hub = build_hub(Cardinality(histograms=profile(name).with_native(native)))
        node = SyntheticNode(connections=connections, streams_per_conn=streams, seed=1, peerstore=True)
        for msg in node.messages(steps):
            hub.ingest("n", msg)
        return Exposition(hub, process=False), 0
    tracemalloc.start()
    hub = build_hub(Cardinality(histograms=profile(name).with_native(native)))
    node = SyntheticNode(connections=connections, streams_per_conn=streams, seed=1, peerstore=True)
    for msg in node.messages(steps):
        hub.ingest("n", msg)
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Exposition(hub, process=False), held


def cpu_ms(fn: Any, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        out.append((time.process_time() - t) * 1000)
    return out


def measure(size: tuple[int, int, int], reps: int, trace: bool = True) -> dict[str, Any]:
    connections, streams, steps = size
    result: dict[str, Any] = {}
    built = {config: build(config, connections, streams, steps, trace) for config in CONFIGS}
    timings: dict[tuple[str, str], list[float]] = {}
    # The text and OpenMetrics lines of a block are written in one pass: one render for both.
    formats = {"text+openmetrics": Format.TEXT, "protobuf": Format.PROTOBUF}
    for _ in range(reps):  # interleaved: every configuration and format once per round
        for config, (exposition, _held) in built.items():
            node = exposition.hub.nodes["n"]
            for fname, fmt in formats.items():

                def render(exposition: Exposition = exposition, fmt: Format = fmt, node: Any = node) -> None:
                    node.touch()  # a changed node: rendered again
                    if fmt is Format.PROTOBUF:
                        exposition.proto_block(node)
                    else:
                        exposition.block(node)

                timings.setdefault((config, fname), []).extend(cpu_ms(render, 1))
    for config, (exposition, held) in built.items():
        node = exposition.hub.nodes["n"]
        native = CONFIGS[config][1]
        text = exposition.probe("n", Format.TEXT)
        om = exposition.probe("n", Format.OPENMETRICS)
        proto = exposition.probe("n", Format.PROTOBUF)
        if native is None:
            stored = stored_from_text(om, "n")
        else:
            stored = stored_from_protobuf(proto, "n", keep_classic=native.classic)
        block = exposition.block(node)
        text_bytes = sum(len(p.text) + len(p.om) + sum(len(m) for _, m in p.moved) for p in block.parts.values())
        proto_bytes = sum(len(m) + len(h.header) for h, m in exposition.proto_block(node).parts.values())
        result[config] = {
            "stored_series": sum(stored.values()),
            "stored_histogram_series": {f: stored[f] for f in FAMILIES},
            "bytes": {
                "text": len(text),
                "openmetrics": len(om),
                "protobuf": len(proto),
                "text_gzip1": len(gzip.compress(text, 1)),
                "protobuf_gzip1": len(gzip.compress(proto, 1)),
            },
            "render_ms_median": {fname: statistics.median(v) for (c, fname), v in timings.items() if c == config and v},
            "cached_block_bytes": {"text+openmetrics": text_bytes, "protobuf": proto_bytes},
            "traced_hub_bytes": held,
        }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50x3x300,2000x5x60", help="CONNECTIONSxSTREAMSxSTEPS, comma-separated")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-trace", action="store_true", help="skip tracemalloc (much faster replay; no memory column)")
    args = ap.parse_args()
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    for spec in args.sizes.split(","):
        c, s, n = (int(x) for x in spec.split("x"))
        res = out[spec] = measure((c, s, n), args.reps, trace=not args.no_trace)
        print(f"\n{c} connections x {s} streams, {n} States ({args.reps} reps)")
        print(
            "| | stored series / node | of them histograms | text B | OpenMetrics B | protobuf B | "
            "render text+OM / protobuf ms | cached block B (text+OM / protobuf) | traced after replay MiB |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for config, r in res.items():
            b, t, cb = r["bytes"], r["render_ms_median"], r["cached_block_bytes"]
            renders = " / ".join(f"{t[f]:.2f}" for f in ("text+openmetrics", "protobuf"))
            print(
                f"| {config} | {r['stored_series']} | {sum(r['stored_histogram_series'].values())} | "
                f"{b['text']:,} | {b['openmetrics']:,} | {b['protobuf']:,} | {renders} | "
                f"{cb['text+openmetrics']:,} / {cb['protobuf']:,} | {r['traced_hub_bytes'] / 2**20:.1f} |"
            )
    out["load_after"] = os.getloadavg()
    print(f"\nload average before {out['load_before']}, after {out['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
