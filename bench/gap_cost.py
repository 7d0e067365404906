"""What one accepted State costs when the node's States in between were shed (issue 20).

    nice -n 19 .venv/bin/python bench/gap_cost.py --reps 5

A State accepted k steps after the node's previous accepted one carries k steps of churn (opened,
closed and vanished connections and streams, DHT changes), so an exporter that sheds pays more per
State it keeps. Twenty ``SyntheticNode``s (50 connections x 3 streams, 8 DHT buckets, 10 s retention,
as ``bench/loadgen.py``'s) are generated first; then for each gap k, a fresh live hub (lean profile)
is fed every k-th State of every node, and the thread CPU of parse + ``Hub.ingest`` is summed over
those States only (the first State of each node, which builds its records, is left out).
Collection is paced as the exporter serves (frozen start-up, automatic collection off).

Method: ``--reps`` repetitions, the gaps interleaved within each (1, 3, 5, ... then again), and the
median per gap of the CPU per State; the spread (min-max) is printed with it. There is no floor:
the figure is a curve of one cost against the gap, and every State's parse and ingest is work the
exporter does.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.app.runtime import build_hub, cardinality_of
from exporter.generator import SyntheticNode
from exporter.protocol.framing import parse_server_message
from exporter.settings import Limits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--steps", type=int, default=61)
    ap.add_argument("--gaps", default="1,3,5,10,15")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    nodes: list[tuple[list[bytes], list[bytes]]] = []
    for seed in range(args.nodes):
        node = SyntheticNode(connections=50, streams_per_conn=3, buckets=8, seed=seed, retention_ms=10_000)
        first = [node.runtime().SerializeToString(), node.config_response().SerializeToString()]
        states = [node.state().SerializeToString()]
        for _ in range(args.steps - 1):
            node.step()
            states.append(node.state().SerializeToString())
        nodes.append((first, states))
    gc.collect()
    gc.freeze()
    gc.disable()
    gaps = [int(g) for g in args.gaps.split(",")]
    per_state: dict[int, list[float]] = {gap: [] for gap in gaps}
    counts: dict[int, int] = {}
    for _ in range(args.reps):
        for gap in gaps:  # interleaved: a drift of the machine touches every gap alike
            cpu, counts[gap] = one_pass(nodes, gap, args.steps)
            per_state[gap].append(cpu / counts[gap])
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"python {' '.join(sys.argv)} (medians of {args.reps} interleaved repetitions)")
    for gap in gaps:
        ms = [x * 1000 for x in per_state[gap]]
        print(
            f"every {gap:2d} steps: {counts[gap]:5d} States, {statistics.median(ms):.2f} ms CPU each "
            f"(min {min(ms):.2f}, max {max(ms):.2f})"
        )


def one_pass(nodes: list[tuple[list[bytes], list[bytes]]], gap: int, steps: int) -> tuple[float, int]:
    """A fresh hub fed every ``gap``-th State of every node: (CPU seconds over those States, count)."""
    hub = build_hub(cardinality_of(Limits(histograms_profile="lean")), live=True)
    cpu, count = 0.0, 0
    for i, (first, states) in enumerate(nodes):
        name = f"n{i}"
        for msg in [*first, states[0]]:
            hub.ingest(name, parse_server_message(msg))
        for k in range(gap, steps, gap):
            started = time.thread_time()
            hub.ingest(name, parse_server_message(states[k]))
            cpu += time.thread_time() - started
            count += 1
    return cpu, count


if __name__ == "__main__":
    main()
