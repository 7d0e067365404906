"""Render floor: one changed node's block against the least work that prints the same samples.

Run: PYTHONPATH=. .venv/bin/python bench/render_floor.py [--connections 100] [--streams 3] [--reps 200]

The node is the synthetic generator's (100 connections x 3 streams, 20 DHT buckets, churn, seed 1)
after ``--states`` States through the real pipeline (``exporter.app.runtime.build_hub``, the
standard mappers). Contenders, CPU clock of this process (``time.process_time``), each timed call
repeated ``--batch`` times and divided, medians over ``--reps`` interleaved repetitions (every
repetition runs each contender once, in a rotated order, so load from other work on a shared
machine falls on all of them alike):

  floor           the node's samples from ``name{labels} `` prefixes built once per series (and each
                  family's HELP/TYPE header built once); at each render only the values are
                  formatted (``go_float``, the exposition's own number format) and the lines joined.
                  Its input is the samples' values of two consecutive States, alternated.
  ours, changed   ``Exposition.block`` of the node after ``NodeState.touch()``: the mappers' collect,
                  the series budget and the block writer, as the first scrape after a State does.
  ours, unchanged ``Exposition.block`` with nothing changed (the cached block).
  ingest          ``Hub.ingest`` of a decoded State (the node's last two States alternated, each
                  stamped a second after the one before, so every one is accepted and churns) against
                  the floor's read of the same States (``bench/floor_node.py``), for "ingest no worse".

Before timing, the floor's text is checked byte for byte against ours (text format, one node).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.floor import LabelCache
from bench.floor_node import FloorNode
from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.sinks.exposition import join
from exporter.sinks.exposition.escape import go_float
from exporter.sinks.prometheus import Exposition

NODE = "node-0000"


class Floor:
    """Samples as (family header, series prefix, value); prefixes built once per series, values
    formatted at every render."""

    def __init__(self) -> None:
        self.prefixes: dict[str, str] = {}
        self.headers: dict[str, str] = {}

    def load(self, text: str) -> list[tuple[str, str, float]]:
        """The samples of a text exposition: (family header or "", prefix, value), in order. Each
        series' prefix is built (and kept) the first time it is seen, as a real floor would on
        first sight of a series."""
        out: list[tuple[str, str, float]] = []
        header: list[str] = []
        for line in text.splitlines():
            if line.startswith("#"):
                header.append(line + "\n")
                continue
            key, _, value = line.rpartition(" ")
            head = "".join(header)
            header = []
            if head:
                self.headers.setdefault(head, head)
            prefix = self.prefixes.get(key)
            if prefix is None:
                prefix = self.prefixes[key] = key + " "
            out.append((self.headers.get(head, ""), prefix, float(value)))
        return out

    @staticmethod
    def render(samples: list[tuple[str, str, float]]) -> bytes:
        parts: list[str] = []
        add = parts.append
        for head, prefix, value in samples:
            if head:
                add(head)
            add(prefix)
            add(go_float(value))
            add("\n")
        return "".join(parts).encode()


def node_states(connections: int, streams: int, states: int) -> list[pb.ServerMessage]:
    synthetic = SyntheticNode(connections=connections, streams_per_conn=streams, buckets=20, seed=1)
    msgs = [synthetic.runtime(), synthetic.config_response()]
    for _ in range(states):
        msgs.append(synthetic.state())
        synthetic.step()
        synthetic.pending_events.clear()
    return [m for raw in msgs for m in decode_segments(encode_segment(raw)).messages]


def measure(contenders: dict[str, Callable[[], object]], reps: int, batch: int) -> dict[str, list[float]]:
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            fn = contenders[name]
            gc.collect()
            t0 = time.process_time()
            for _ in range(batch):
                fn()
            times[name].append((time.process_time() - t0) / batch)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--states", type=int, default=60, help="States ingested before timing")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=5, help="calls per timed measurement")
    args = ap.parse_args()

    msgs = node_states(args.connections, args.streams, args.states + 2)
    hub: Hub = build_hub()
    for msg in msgs[:-2]:
        hub.ingest(NODE, msg)
    exposition = Exposition(hub, process=False)
    node = hub.nodes[NODE]
    ours_text = join([exposition.block(node)]).decode()

    floor = Floor()
    samples = floor.load(ours_text)
    assert Floor.render(samples).decode() == ours_text, "the floor must print exactly our block"
    # The next State's values, for the floor's alternation (ours re-renders from the hub's state).
    spare = build_hub()
    for msg in msgs[:-1]:
        spare.ingest(NODE, msg)
    samples_next = floor.load(join([Exposition(spare, process=False).block(spare.nodes[NODE])]).decode())
    turn = [samples, samples_next]

    def floor_render() -> None:
        turn.reverse()
        Floor.render(turn[0])

    def changed() -> None:  # what a State does to the node's version (before issue 21: a bare counter)
        if hasattr(node, "touch"):
            node.touch()
        else:
            node.version += 1

    def ours_changed() -> None:
        changed()
        exposition.block(node)

    def ours_unchanged() -> None:
        exposition.block(node)

    # Ingest: ours against the floor's read, each fed the same two later States alternately from
    # its own copy of the node (a State older than the last one is dropped by both, so each call is
    # given the State after the one it saw last: the two are swapped by re-feeding the pair).
    states = [m for m in msgs if m.WhichOneof("payload") == "state"]
    ingest_hub = build_hub()
    floor_node = FloorNode("i", LabelCache(ingest_hub.cardinality))
    for msg in msgs:
        ingest_hub.ingest("i", msg)
    for raw in states:
        floor_node._state(raw.state)
    clock = [states[-1].state.instant_ts]

    def next_state() -> pb.ServerMessage:
        # A copy of the last State, stamped later: a real, accepted State that changes nothing.
        clock[0] += 1000
        msg = pb.ServerMessage()
        msg.CopyFrom(states[-2 + (clock[0] // 1000) % 2])
        msg.state.instant_ts = clock[0]
        return msg

    queue: list[pb.ServerMessage] = []

    def ours_ingest() -> None:
        ingest_hub.ingest("i", queue.pop())

    def floor_ingest() -> None:
        floor_node._state(queue.pop().state)

    contenders: dict[str, Callable[[], object]] = {
        "floor render": floor_render,
        "ours render, changed node": ours_changed,
        "ours render, unchanged node": ours_unchanged,
    }
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "?",
    )
    print(f"machine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("loadavg at start:", Path("/proc/loadavg").read_text().split()[:3])
    print(f"node: {args.connections}x{args.streams}, {ours_text.count(chr(10)) - ours_text.count('# ')} samples")
    render_t = measure(contenders, args.reps, args.batch)

    def fill_queue() -> None:
        queue.extend(next_state() for _ in range(args.batch))
        queue.reverse()

    ingest_t: dict[str, list[float]] = {"ours ingest": [], "floor read": []}
    for rep in range(max(20, args.reps // 4)):
        order = [("ours ingest", ours_ingest), ("floor read", floor_ingest)]
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            fill_queue()
            gc.collect()
            t0 = time.process_time()
            for _ in range(args.batch):
                fn()
            ingest_t[name].append((time.process_time() - t0) / args.batch)
    print("loadavg at end:", Path("/proc/loadavg").read_text().split()[:3])
    print(f"CPU ms per call, [q1, median, q3] of {args.reps} interleaved repetitions x {args.batch} calls:")
    for name, ts in {**render_t, **ingest_t}.items():
        q1, med, q3 = quartiles(ts)
        print(f"  {name:30s} [{q1 * 1e3:.3f}, {med * 1e3:.3f}, {q3 * 1e3:.3f}]")
    ratio = statistics.median(render_t["ours render, changed node"]) / statistics.median(render_t["floor render"])
    ingest_ratio = statistics.median(ingest_t["ours ingest"]) / statistics.median(ingest_t["floor read"])
    print(f"ours changed / floor render: {ratio:.2f}x (target <= 2); ours ingest / floor read: {ingest_ratio:.2f}x")


if __name__ == "__main__":
    main()
