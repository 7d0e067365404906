"""Core benchmark: one node's States through each contender, CPU-clock medians of interleaved repetitions.

Run (from the repository root):

    .venv/bin/python bench/bench_core.py                      # 50x3 and 10000x5, compare, render bench
    .venv/bin/python bench/bench_core.py --sizes 50x3 --reps 30 --json out.json

Contenders (each a factory returning a node with ``ingest(segment: bytes)`` and ``render() -> bytes``):

  ours   the current pipeline: ``decode_segments`` + ``exporter.pipeline.hub.Hub.ingest``, then
         ``exporter.sinks.prometheus.Exposition.metrics`` (the /metrics path: the node's block rendered
         once per change and joined with the globals; process_* left out, the others do not have it);
  families  the same ingest, then the families built afresh with prometheus_client's
         ``generate_latest`` (``HubCollector`` + ``render``: the /metrics path before issue 11);
  floor  the least work that gives the same samples (``bench/floor.py``): frame check + parse, one pass
         over the needed fields into dicts of small tuples, render from cached prefixes;
  naive  the floor's pass feeding prometheus_client Gauges/Counters/Histograms (``bench/naive.py``);
  read   frame check + parse + reading the fields the floor reads for known ids, nothing kept (no render);
  parse  frame check + ``ServerMessage.FromString`` only (no render): the part no one can skip.

A future engine is one more entry in ``CONTENDERS`` (or ``register``); everything else stays.

Method: each size's frames are pre-generated (``exporter.generator.SyntheticNode``: Runtime, config
response, then consecutive States with churn) and framed once. A repetition gives every contender,
in turn, a fresh node, feeds it the Runtime, config and first State untimed, then times each later
State's ``ingest`` and the ``render`` right after it with ``time.process_time`` (CPU clock). The
repetitions interleave the contenders (ours, floor, naive, read, parse, ours, ...) so that machine noise
hits all alike; medians and quartiles are over every State of every repetition. The collector runs
as in production; ``gc.collect()`` (untimed) between contenders keeps one's garbage off the next
one's clock.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from google.protobuf.internal import api_implementation  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402
from prometheus_client.metrics_core import Metric  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.floor import LabelCache, read_needed  # noqa: E402
from bench.floor_node import FloorNode, decode  # noqa: E402
from bench.naive import NaiveNode  # noqa: E402
from exporter.app.runtime import build_hub  # noqa: E402
from exporter.generator import SyntheticNode  # noqa: E402
from exporter.model.labels import Cardinality  # noqa: E402
from exporter.protocol.framing import decode_segments, encode_segment  # noqa: E402
from exporter.sinks.prometheus import Exposition  # noqa: E402
from tests.support.reference import HubCollector, render  # noqa: E402


class Node(Protocol):
    def ingest(self, segment: bytes) -> None: ...
    def render(self) -> bytes: ...


@dataclass
class Frames:
    """Pre-generated, framed input of one node: untimed preamble, then States."""

    label: str
    preamble: list[bytes]
    states: list[bytes]


def make_frames(connections: int, streams: int, states: int, seed: int = 1) -> Frames:
    node = SyntheticNode(
        connections=connections, streams_per_conn=streams, buckets=20 if connections > 1000 else 8, seed=seed
    )
    preamble = [encode_segment(node.runtime()), encode_segment(node.config_response())]
    framed = [encode_segment(node.state())]
    for _ in range(states):
        node.step()
        node.pending_events.clear()
        framed.append(encode_segment(node.state()))
    return Frames(f"{connections}x{streams}", preamble, framed)


class OursNode:
    """The current pipeline, as live mode runs it for one target."""

    def __init__(self) -> None:
        self.hub = build_hub()
        self.exposition = Exposition(self.hub, process=False)

    def ingest(self, segment: bytes) -> None:
        result = decode_segments(segment, versioned=True)
        if result.errors:
            self.hub.errors("n", result.errors)
        for msg in result.messages:
            self.hub.ingest("n", msg)

    def render(self) -> bytes:
        return self.exposition.metrics()


class FamiliesNode(OursNode):
    """The same ingest, rendered by building prometheus_client families afresh and printing them with
    ``generate_latest`` (the /metrics path before issue 11; now tests/support/reference.py's writer)."""

    def __init__(self) -> None:
        super().__init__()
        self.collector = HubCollector(self.hub)

    def render(self) -> bytes:
        return render(self.collector)[0]


class ParseOnly:
    def ingest(self, segment: bytes) -> None:
        decode(segment)

    def render(self) -> bytes:
        return b""


class ReadOnly(ParseOnly):
    def ingest(self, segment: bytes) -> None:
        msg = decode(segment)
        if msg.WhichOneof("payload") == "state":
            read_needed(msg.state)


CONTENDERS: dict[str, Callable[[], Node]] = {
    "ours": OursNode,
    "families": FamiliesNode,
    "floor": lambda: FloorNode("n", LabelCache(Cardinality())),
    "naive": lambda: NaiveNode("n", LabelCache(Cardinality())),
    "read": ReadOnly,
    "parse": ParseOnly,
}
NO_RENDER = {"parse", "read"}


def register(name: str, factory: Callable[[], Node], renders: bool = True) -> None:
    """Add a contender (e.g. a new engine) to every run."""
    CONTENDERS[name] = factory
    if not renders:
        NO_RENDER.add(name)


def run_once(
    factory: Callable[[], Node], frames: Frames, ingest: list[float], rendered: list[float], do_render: bool
) -> Node:
    clock = time.process_time
    node = factory()
    for seg in (*frames.preamble, frames.states[0]):
        node.ingest(seg)
    for seg in frames.states[1:]:
        t0 = clock()
        node.ingest(seg)
        t1 = clock()
        ingest.append(t1 - t0)
        if do_render:
            node.render()
            rendered.append(clock() - t1)
    return node


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, med, q3


def bench_size(frames: Frames, names: list[str], reps: int) -> dict[str, dict[str, object]]:
    ingest: dict[str, list[float]] = {n: [] for n in names}
    rendered: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(reps):
        for name in names:
            gc.collect()
            run_once(CONTENDERS[name], frames, ingest[name], rendered[name], name not in NO_RENDER)
    gc.collect()
    out: dict[str, dict[str, object]] = {}
    for name in names:
        row: dict[str, object] = {
            "ingest_ms": [round(v * 1e3, 3) for v in quartiles(ingest[name])],
            "n": len(ingest[name]),
        }
        if rendered[name]:
            total = [a + b for a, b in zip(ingest[name], rendered[name])]
            row["render_ms"] = [round(v * 1e3, 3) for v in quartiles(rendered[name])]
            row["state_to_exposition_ms"] = [round(v * 1e3, 3) for v in quartiles(total)]
        out[name] = row
    return out


# -- same output? ---------------------------------------------------------------------------------
TIMING = {"libp2p_exporter_scrape_duration_seconds"}


def samples_of(body: bytes) -> tuple[dict[str, str], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    fams: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(body.decode()):
        fams[fam.name] = fam.type
        for s in fam.samples:
            labels = {k: (repr(float(v)) if k == "le" and v != "+Inf" else v) for k, v in s.labels.items()}
            samples[(s.name, frozenset(labels.items()))] = s.value
    return fams, samples


def compare(frames: Frames, names: list[str]) -> dict[str, dict[str, object]]:
    """Feed every contender the same frames and compare its exposition with ours (parsed)."""
    bodies = {}
    for name in names:
        if name in NO_RENDER:
            continue
        node = CONTENDERS[name]()
        for seg in (*frames.preamble, *frames.states):
            node.ingest(seg)
        bodies[name] = node.render()
    ref_f, ref_s = samples_of(bodies["ours"])
    report: dict[str, dict[str, object]] = {}
    for name, body in bodies.items():
        fams, samples = samples_of(body)
        keys, ref_keys = set(samples), set(ref_s)
        differing = sorted(
            k[0]
            for k in keys & ref_keys
            if samples[k] != ref_s[k] and k[0] not in TIMING and not _nan_both(samples[k], ref_s[k])
        )
        report[name] = {
            "families": len(fams),
            "samples": len(samples),
            "bytes": len(body),
            "families_missing": sorted(set(ref_f) - set(fams)),
            "families_extra": sorted(set(fams) - set(ref_f)),
            "family_type_differs": sorted(n for n in set(fams) & set(ref_f) if fams[n] != ref_f[n]),
            "series_missing": len(ref_keys - keys),
            "series_extra": len(keys - ref_keys),
            "series_extra_names": sorted({k[0] for k in keys - ref_keys}),
            "series_missing_names": sorted({k[0] for k in ref_keys - keys}),
            "values_differ": len(differing),
            "values_differ_names": sorted(set(differing)),
        }
    return report


def _nan_both(a: float, b: float) -> bool:
    return a != a and b != b


# -- render micro-benchmark -----------------------------------------------------------------------
class Prebuilt:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def bench_render(frames: Frames, reps: int) -> dict[str, list[float]]:
    """One node's block: the floor's cached-prefix render, generate_latest over the same samples
    (families prebuilt, so only prometheus_client's formatting is timed), ours after a change (the
    node's version bumped, untimed, so its block is rendered again) and ours with nothing changed."""
    ours, floor = OursNode(), CONTENDERS["floor"]()
    for seg in (*frames.preamble, *frames.states):
        ours.ingest(seg)
        floor.ingest(seg)
    prebuilt = Prebuilt(list(HubCollector(ours.hub).collect()))
    floor.render()  # the first render builds the prefix cache; later ones reuse it
    node = ours.hub.nodes["n"]

    def changed() -> None:
        node.touch()

    clock = time.process_time
    times: dict[str, list[float]] = {
        "floor_block": [],
        "generate_latest_prebuilt": [],
        "ours_render": [],
        "ours_unchanged": [],
    }
    for _ in range(reps):
        for key, before, fn in (
            ("floor_block", None, floor.render),
            ("generate_latest_prebuilt", None, lambda: generate_latest(prebuilt)),  # type: ignore[arg-type]
            ("ours_render", changed, ours.render),
            ("ours_unchanged", None, ours.render),
        ):
            if before is not None:
                before()
            t0 = clock()
            fn()
            times[key].append(clock() - t0)
    return {k: [round(x * 1e3, 4) for x in quartiles(v)] for k, v in times.items()}


# -- the machine ----------------------------------------------------------------------------------
def machine() -> dict[str, object]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "protobuf": f"{metadata.version('protobuf')} ({api_implementation.Type()})",
        "prometheus_client": metadata.version("prometheus_client"),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50x3,10000x5", help="CONNSxSTREAMS,... (default 50x3,10000x5)")
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default 20 for small States, 5 for large)")
    ap.add_argument("--states", type=int, default=0, help="timed States per repetition (default 10 small, 2 large)")
    ap.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated, ours first")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    names = args.contenders.split(",")
    result: dict[str, object] = {"machine_before": machine(), "sizes": {}}
    print(json.dumps(result["machine_before"]))
    for size in args.sizes.split(","):
        conns, streams = (int(x) for x in size.split("x"))
        large = conns * streams > 5000
        reps = args.reps or (5 if large else 20)
        states = args.states or (2 if large else 10)
        frames = make_frames(conns, streams, states)
        kb = statistics.median(len(s) for s in frames.states) / 1e3
        print(
            f"\n== {frames.label}: {len(frames.states) - 1} timed States x {reps} repetitions, {kb:.0f} kB framed per State"
        )
        cmp = compare(frames, names)
        for name, row in cmp.items():
            print(f"  output {name:6} {json.dumps(row)}")
        timing = bench_size(frames, names, reps)
        for name, row in timing.items():
            print(f"  {name:6} " + "  ".join(f"{k} {v}" for k, v in row.items() if k != "n"))
        ratios = _ratios(timing)
        print("  ratios (medians): " + json.dumps(ratios))
        entry: dict[str, object] = {"compare": cmp, "timing": timing, "ratios": ratios, "kB_per_state": round(kb, 1)}
        entry["render"] = bench_render(frames, 20 if large else 100)
        print("  render one node's block [q1, median, q3] ms: " + json.dumps(entry["render"]))
        result["sizes"][frames.label] = entry  # type: ignore[index]
    result["machine_after"] = machine()
    print("\nloadavg after: " + " ".join(result["machine_after"]["loadavg"]))  # type: ignore[index]
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def _ratios(timing: dict[str, dict[str, object]]) -> dict[str, float]:
    def med(name: str, key: str) -> float | None:
        row = timing.get(name, {}).get(key)
        return row[1] if isinstance(row, list) else None  # type: ignore[index]

    out: dict[str, float] = {}
    for a, b, key in (
        ("ours", "floor", "ingest_ms"),
        ("ours", "floor", "state_to_exposition_ms"),
        ("naive", "ours", "ingest_ms"),
        ("naive", "ours", "state_to_exposition_ms"),
        ("naive", "floor", "state_to_exposition_ms"),
        ("ours", "read", "ingest_ms"),
        ("floor", "read", "ingest_ms"),
        ("read", "parse", "ingest_ms"),
    ):
        x, y = med(a, key), med(b, key)
        if x and y:
            out[f"{a}/{b} {key.removesuffix('_ms')}"] = round(x / y, 2)
    return out


if __name__ == "__main__":
    main()
