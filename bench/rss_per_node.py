"""What one node costs the exporter in memory (issue 20), in MiB per node, by kind.

Command (run under ``nice``: it is one busy core for a minute at 1,000 nodes)::

    nice -n 19 .venv/bin/python bench/rss_per_node.py --nodes 300 --breakdown
    nice -n 19 .venv/bin/python bench/rss_per_node.py --nodes 300 --tracemalloc
    nice -n 19 .venv/bin/python bench/rss_per_node.py --nodes 1000
    nice -n 19 .venv/bin/python bench/rss_per_node.py --nodes 300 --profile default --probe --breakdown

What it does: a live-mode hub (``build_hub(live=True)``, the ``--histograms.profile`` given, lean by
default) is fed, node after node, a Runtime, the config response and ``--states`` States of a
``SyntheticNode`` (50 connections x 3 streams, 8 DHT buckets), as the live source would; the
generator of each node is dropped once its States are in, so what stays is the exporter's alone.
Then every node is rendered once (``Exposition.metrics()``, text format), as a scrape does; with
``--probe``, configuration (b) instead (``--metrics.nodes none``, every node scraped by /probe): the
nodes are hidden and each is rendered once through ``Exposition.probe()``, its body dropped before
the next, as one probe cycle (15 s) leaves the exporter.

What it reports:

- RSS (``/proc/self/status`` VmRSS, after ``gc.collect()`` and glibc's ``malloc_trim(0)`` so freed
  memory is given back; ``--no-trim`` reads it without, as the exporter itself runs) before any node, after ingest, with the scrape's body, and after the body is
  dropped (the cached blocks stay); the differences divided by the node count are MiB per node.
- ``--breakdown``: the retained Python objects of every node walked with ``sys.getsizeof``
  (containers, slotted objects and dataclasses followed; each object counted once, in the first kind
  that reaches it, so strings shared by all nodes cost almost nothing), by kind: the lean tracker's
  connection/stream/done records, the last ``StateStep``, DHT view, each mapper's accumulator, the
  rest of ``NodeState``, the cached rendered block. Protobuf messages kept by a node (Runtime,
  Configuration) live in upb arenas that neither ``getsizeof`` nor tracemalloc sees: their cost is
  the RSS given back when every node's are dropped (measured last, after the rest).
- ``--tracemalloc``: the top allocation sites (``filename:lineno``) of what is still allocated after
  the render, and the top tracebacks; tracing slows ingest about 3x and is off by default.

Machine for the figures in bench/README.md: AMD EPYC VM, 2 cores, Python 3.11.7, protobuf 6.33.6 (upb).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import time
import tracemalloc
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.app.runtime import build_hub, cardinality_of
from exporter.generator import SyntheticNode
from exporter.pipeline.hub import Hub
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.settings import Limits
from exporter.sinks.exposition import SHARED
from exporter.sinks.prometheus import Exposition

MiB = 1024 * 1024
_LIBC = ctypes.CDLL("libc.so.6")


TRIM = True  # --no-trim: RSS as the exporter sees it (it never calls malloc_trim)


def rss() -> int:
    """VmRSS in bytes, after a full collection and (unless --no-trim) freed heap given back to the system."""
    gc.collect()
    if TRIM:
        _LIBC.malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def feed(hub: Hub, name: str, seed: int, states: int, conns: int, streams: int, retention_ms: int = 10_000) -> None:
    """A node's session as the live source delivers it: decoded segments into ``hub.ingest``."""
    node = SyntheticNode(connections=conns, streams_per_conn=streams, buckets=8, seed=seed, retention_ms=retention_ms)
    msgs = [node.runtime(), node.config_response(), node.state()]
    for k in range(states):
        if k:
            node.step()
            msgs.append(node.state())
        for msg in msgs:
            for decoded in decode_segments(encode_segment(msg), versioned=True).messages:
                hub.ingest(name, decoded)
        msgs = []


_SKIP = (type, type(sys), type(len), type(rss))


class Sizer:
    """Deep ``sys.getsizeof`` with one ``seen`` set across calls: each object is counted once."""

    def __init__(self, shared: Iterable[object] = ()) -> None:
        self.seen: set[int] = {id(o) for o in shared}
        self.protobuf = 0  # protobuf messages met (their arena is not measured here)

    def size(self, root: object) -> int:
        total = 0
        stack = [root]
        while stack:
            obj = stack.pop()
            if id(obj) in self.seen or isinstance(obj, _SKIP):
                continue
            self.seen.add(id(obj))
            mod = type(obj).__module__
            if mod.endswith("_pb2") or mod.startswith("google."):
                self.protobuf += 1
                continue
            if type(obj).__name__ in ("lock", "RLock", "_RLock"):
                continue
            total += sys.getsizeof(obj)
            if isinstance(obj, dict):
                stack.extend(obj.keys())
                stack.extend(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset)):
                stack.extend(obj)
            elif isinstance(obj, (str, bytes, int, float, bool)) or obj is None:
                pass
            else:
                if hasattr(obj, "__dict__"):
                    stack.append(obj.__dict__)
                for klass in type(obj).__mro__:
                    for slot in getattr(klass, "__slots__", ()):
                        if hasattr(obj, slot):
                            stack.append(getattr(obj, slot))
                if is_dataclass(obj) and not hasattr(obj, "__dict__"):
                    stack.extend(getattr(obj, f.name) for f in fields(obj))
        return total


def breakdown(hub: Hub, exp: Exposition) -> dict[str, int]:
    """Bytes by kind over every node (see the module's docstring)."""
    shared: list[object] = [hub, hub.cardinality, SHARED, SHARED.entries, SHARED.heads, *SHARED.heads.values()]
    shared += [m for m in hub.mappers]
    sizer = Sizer(shared)
    kinds: dict[str, int] = {}

    def add(kind: str, obj: object) -> None:
        kinds[kind] = kinds.get(kind, 0) + sizer.size(obj)

    for name, node in hub.nodes.items():
        lean = node.lean
        add("lean.conns (records by id)", lean.conns)
        add("lean.streams (records by id)", lean.streams)
        add("lean.done (closed conns' streams)", lean.done)
        add("dht view (lean.dht, last_step.dht)", lean.dht)
        add("lean.peers", lean.peers)
        add("last_step (StateStep)", node.last_step)
        for mname, acc in node.accs.items():
            add(f"acc:{mname}", acc)
        held = exp._cache.get(name)  # a measurement looks inside
        if held is not None:
            add("cached block (text/om bytes + parts)", held[1])
        rest: dict[str, Any] = {}
        for f in fields(node):
            if f.name not in ("lean", "last_step", "accs", "runtime", "config", "lock"):
                rest[f.name] = getattr(node, f.name)
        add("NodeState rest (counters, session, labels)", rest)
        add("NodeState itself", node)
    kinds["protobuf messages held (count, not bytes)"] = sizer.protobuf
    return kinds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=300)
    p.add_argument(
        "--states",
        type=int,
        default=15,
        help="States per node (the first included; past the generator's 10-State retention)",
    )
    p.add_argument(
        "--retention", type=float, default=10.0, help="seconds a node lists closed connections (give --states past it)"
    )
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--streams", type=int, default=3, help="streams per connection")
    p.add_argument("--profile", default="lean", help="histogram profile (default or lean)")
    p.add_argument("--breakdown", action="store_true", help="getsizeof by kind")
    p.add_argument("--tracemalloc", action="store_true", help="top allocation sites still held")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-trim", action="store_true", help="no malloc_trim before reading RSS (what production sees)")
    p.add_argument(
        "--probe",
        action="store_true",
        help="configuration (b): nodes hidden from /metrics, each rendered once through /probe",
    )
    args = p.parse_args()
    global TRIM
    TRIM = not args.no_trim

    hub = build_hub(cardinality_of(Limits(histograms_profile=args.profile)), live=True)
    exp = Exposition(hub, process=False)
    # As the exporter serves (app/gc_pacer.py): what start-up built frozen, automatic collection off.
    gc.collect()
    gc.freeze()
    gc.disable()
    if args.tracemalloc:
        tracemalloc.start(8)
    r0 = rss()
    t = time.process_time()
    for i in range(args.nodes):
        feed(hub, f"n{i:04d}", i, args.states, args.connections, args.streams, int(args.retention * 1000))
    ingest_s = time.process_time() - t
    r1 = rss()
    probe_s = 0.0
    if args.probe:
        # One probe cycle: each node's body built and dropped in turn (Exposition.probe, text format).
        body_len = 0
        t = time.process_time()
        for name, node in hub.nodes.items():
            node.hidden = True
            body_len += len(exp.probe(name))
        probe_s = time.process_time() - t
        r2 = r3 = rss()
    else:
        body = exp.metrics()
        r2 = rss()
        body_len = len(body)
        del body
        r3 = rss()
    n = args.nodes
    mode = "(b): every node through /probe" if args.probe else "(a): one /metrics"
    print(f"nodes {n}, {args.connections} conns x {args.streams} streams, profile {args.profile}, {args.states} States")
    print(
        f"render {mode}; renders {exp.renders}"
        + (f", probe CPU {probe_s / n * 1000:.2f} ms/node" if args.probe else "")
    )
    print(f"ingest CPU {ingest_s:.1f}s; body {body_len / 1e6:.1f} MB ({body_len / n / 1024:.1f} KiB/node)")
    print(f"RSS MiB: start {r0 / MiB:.0f}, after ingest {r1 / MiB:.0f}, with body {r2 / MiB:.0f}, after {r3 / MiB:.0f}")
    print(
        f"MiB/node: ingest {(r1 - r0) / n / MiB:.3f}, cached blocks {(r3 - r1) / n / MiB:.3f}, "
        f"total {(r3 - r0) / n / MiB:.3f}; body {(r2 - r3) / n / MiB:.3f}"
    )
    print(f"GC-tracked objects {len(gc.get_objects())}")
    if args.tracemalloc:
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        traced = sum(s.size for s in snap.statistics("filename"))
        print(f"\ntracemalloc: {traced / MiB:.1f} MiB traced ({traced / n / MiB:.3f}/node); by file:")
        for s in snap.statistics("filename")[: args.top]:
            print(f"  {s.size / n / 1024:8.1f} KiB/node {s.count / n:8.0f} blocks/node  {s.traceback[0].filename}")
        print("by line:")
        for s in snap.statistics("lineno")[: args.top]:
            fr = s.traceback[0]
            print(f"  {s.size / n / 1024:8.1f} KiB/node {s.count / n:8.0f} blocks/node  {fr.filename}:{fr.lineno}")
        print("by traceback (innermost last):")
        for s in snap.statistics("traceback")[:8]:
            print(f"  {s.size / n / 1024:8.1f} KiB/node")
            for line in s.traceback.format()[-8:]:
                print("     " + line)
        tracemalloc.stop()
    if args.breakdown:
        kinds = breakdown(hub, exp)
        total = 0
        print("\ngetsizeof by kind, KiB/node:")
        for kind, size in sorted(kinds.items(), key=lambda kv: -kv[1]):
            if kind.startswith("protobuf"):
                print(f"  {size / n:10.1f}  {kind} (per node)")
                continue
            total += size
            print(f"  {size / n / 1024:10.1f}  {kind}")
        print(f"  {total / n / 1024:10.1f}  total ({total / n / MiB:.3f} MiB/node)")
        r4 = rss()
        for node in hub.nodes.values():
            node.runtime = node.config = None
        r5 = rss()
        print(f"\nRSS given back dropping every node's Runtime and Configuration: {(r4 - r5) / n / 1024:.1f} KiB/node")


if __name__ == "__main__":
    main()
