"""Backfilling gossipsub traces: what the backfill costs over reading and mapping the events alone.

    .venv/bin/python bench/backfill_traces.py [--nodes 20] [--messages 36000] [--spacing-ms 100]

The synthetic fleet of bench_pubsub.py (each message published once, delivered on every node with a
duplicate and a RECV_RPC each), one message every ``--spacing-ms``: the defaults are an hour of
trace time. It is written as one traced gzip file (as a collector records it) and again as one PB
file per node (each node's own tracer), so the second run also pays for duplicate detection.

- floor: read the gzip file and feed every event to the pubsub mapper (what any use of the trace
  must do), nothing written;
- naive, 1 file: the same output the simple way (all events in memory, sorted, one step loop);
- backfill, 1 file: the backfill's own pass (reorder window, instants every 15 s, OpenMetrics buffer);
- backfill, 1 + N files: the same events twice over, each counted once.

CPU time of this process (``time.process_time``), medians of ``--repeat`` interleaved runs.
"""

from __future__ import annotations

import argparse
import gc
import io
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_pubsub import fleet
from exporter.app.backfill_traces import TraceInput, collect_traces
from exporter.app.pubsub import pubsub_metrics
from exporter.introspector.pubsub_sinks import PBFileSink, TracedFileSink
from exporter.model.labels import Cardinality
from exporter.pipeline.traces import TraceIntakeStats
from exporter.protocol.pubsub_codec import TraceEvent, b58
from exporter.settings import Pubsub
from exporter.sinks.openmetrics_file import TimestampedOpenMetrics
from exporter.sources.pubsub_trace import iter_trace_file

STEP_MS = 15_000


def spread(events: list[TraceEvent], spacing_ns: int) -> None:
    """Stretch bench_pubsub's 10 ms message spacing to ``spacing_ns``."""
    base = events[0].timestamp
    for e in events:
        k, rest = divmod(e.timestamp - base, 10_000_000)
        e.timestamp = base + k * spacing_ns + rest


def floor(path: Path, settings: Pubsub) -> int:
    metrics = pubsub_metrics(Cardinality(), settings, TraceIntakeStats())
    n = 0
    for item in iter_trace_file(path):
        if isinstance(item, TraceEvent):
            metrics.ingest(item)
            n += 1
    return n


def backfill(paths: list[Path], work: Path, settings: Pubsub) -> tuple[str, int]:
    writer = TimestampedOpenMetrics(work, extra_labels={"instance": "bench"})
    files = [TraceInput(p, p.stat().st_size) for p in paths]
    collect_traces(files, writer, Cardinality(), settings, STEP_MS, lambda n: None)
    out = io.StringIO()
    writer.write(out)
    return out.getvalue(), writer.points


def naive(path: Path, work: Path, settings: Pubsub) -> tuple[str, int]:
    """The same output the simple way: every event in memory, sorted, then one step loop (no gaps in
    this input, so none handled)."""
    now = [0]
    metrics = pubsub_metrics(Cardinality(), settings, TraceIntakeStats(files=1), clock=lambda: now[0] / 1e9)
    writer = TimestampedOpenMetrics(work, extra_labels={"instance": "bench"})

    def write(at_ms: int) -> None:
        at = writer.instant("pubsub", at_ms)
        metrics.collect(at)
        at.close()

    events = sorted((e for e in iter_trace_file(path) if isinstance(e, TraceEvent)), key=lambda e: e.timestamp)
    due = -(-(events[0].timestamp // 10**6) // STEP_MS) * STEP_MS
    for e in events:
        while e.timestamp // 10**6 > due:
            write(due)
            due += STEP_MS
        now[0] = max(now[0], e.timestamp)
        metrics.ingest(e)
    metrics.flush()
    write(due)
    out = io.StringIO()
    writer.write(out)
    return out.getvalue(), writer.points


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--messages", type=int, default=36_000)
    ap.add_argument("--spacing-ms", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    settings = Pubsub()  # the mapper as live mode runs it by default
    events = fleet(args.nodes, args.messages)
    spread(events, args.spacing_ms * 1_000_000)
    hours = (events[-1].timestamp - events[0].timestamp) / 3.6e12
    print(f"fleet: {args.nodes} nodes, {args.messages} messages, {len(events)} events, {hours:.2f} h of trace time")
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, command: {' '.join(sys.argv)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gz = root / "collector.pb.gz"
        with TracedFileSink(gz) as sink:
            for e in events:
                sink(e)
        per_node: dict[str, PBFileSink] = {}
        for e in events:
            key = b58(e.peerID)
            if key not in per_node:
                per_node[key] = PBFileSink(root / f"{key}.pb")
            per_node[key](e)
        for s in per_node.values():
            s.close()
        copies = [gz, *sorted(root.glob("*.pb"))]
        n_events = len(events)
        del events, per_node  # the files hold them now; a million live objects would slow every GC pass
        gc.collect()
        variants: dict[str, Callable[[Path], tuple[str, int]]] = {
            "floor": lambda work: ("", floor(gz, settings)),
            "naive, 1 file": lambda work: naive(gz, work, settings),
            "backfill, 1 file": lambda work: backfill([gz], work, settings),
            f"backfill, 1 + {len(copies) - 1} files": lambda work: backfill(copies, work, settings),
        }
        runs: dict[str, list[float]] = {name: [] for name in variants}
        outputs: dict[str, tuple[str, int]] = {}
        for _ in range(args.repeat):  # interleaved: each round runs every variant once
            for name, fn in variants.items():
                work = Path(tempfile.mkdtemp(dir=root))
                t0 = time.process_time()
                outputs[name] = fn(work)
                runs[name].append(time.process_time() - t0)
        texts = {outputs[name][0] for name in variants if name != "floor"}
        print(f"same OpenMetrics output from naive and both backfills: {'yes' if len(texts) == 1 else 'NO'}")
        base = statistics.median(runs["floor"])
        for name, secs in runs.items():
            med = statistics.median(secs)
            extra = f", {outputs[name][1]} samples" if name != "floor" else ""
            print(
                f"{name:<22} {med:7.2f} s CPU  {n_events / med / 1e3:6.0f} k events/s  {med / base:4.2f}x floor{extra}"
            )
        # the CLI on its own, as a child, for its peak memory (this process holds the generated events)
        # (it reports its own peak, VmHWM of its own address space: ru_maxrss would carry this
        # process' pages over from before the child's exec)
        argv = ["backfill", "--format", "openmetrics", "-o", str(root / "cli.om")]
        for p in copies:
            argv += ["--pubsub.file", str(p)]
        code = (
            "import re, sys; from exporter.app.cli import main; rc = main(sys.argv[1:]); "
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]); sys.exit(rc)"
        )
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        child = int(proc.stdout.split()[-1]) / 1024
        print(
            f"CLI, 1 + {len(copies) - 1} files to OpenMetrics: {time.perf_counter() - t0:.1f} s wall, peak RSS {child:.0f} MB"
        )
    print(
        f"peak RSS of this process (the generated events): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
