"""Backfill speed and memory: a synthetic hour-long capture through ``libp2p-exporter backfill``.

Usage: ``.venv/bin/python bench/backfill.py [--steps 3600] [--connections 50] [--spill 2000000]``

Generates a capture (one State per second of synthetic time), then runs the command's phases
one by one and prints each one's wall time, the samples and blocks, and the peak RSS of this
process (promtool runs as a child: its peak is reported separately).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.app.backfill import collect, expand, run_promtool
from exporter.app.progress import Progress
from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.sinks.openmetrics_file import TimestampedOpenMetrics
from exporter.sources.capture import CaptureWriter


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3600)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--spill", type=int, default=2_000_000, help="points buffered before a run file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    try:
        cap = work / "bench.libp2p.trace"
        t0 = time.perf_counter()
        with CaptureWriter(cap) as w:
            for msg in SyntheticNode(connections=args.connections, streams_per_conn=3, seed=1).messages(args.steps):
                w.write(msg)
        print(f"capture: {args.steps + 1} States, {args.connections} connections, {cap.stat().st_size / 1e6:.1f} MB")
        print(f"generate           {time.perf_counter() - t0:8.2f} s")

        files = expand([str(cap)], None)
        (work / "spill").mkdir()
        writer = TimestampedOpenMetrics(
            work / "spill", extra_labels={"job": "libp2p-exporter", "instance": "bench"}, spill_points=args.spill
        )
        t0 = time.perf_counter()
        result = collect(files, writer, build_hub(), Progress(1, sys.stderr, tty=False, period_s=1e9))
        t_collect = time.perf_counter() - t0
        runs = len(list((work / "spill").glob("run-*.bin")))
        print(f"replay + expose    {t_collect:8.2f} s  ({sum(f.written for f in files) / t_collect:.0f} States/s)")

        om = work / "bench.om"
        t0 = time.perf_counter()
        with open(om, "w") as fh:
            result.stats = writer.write(fh)
        print(
            f"write OpenMetrics  {time.perf_counter() - t0:8.2f} s  ({om.stat().st_size / 1e6:.0f} MB, {runs} spill runs)"
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        t0 = time.perf_counter()
        blocks = run_promtool(shutil.which("promtool") or "promtool", om, work / "blocks")
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"promtool           {time.perf_counter() - t0:8.2f} s")
        print(f"series {result.stats.series}, samples {result.stats.samples}, blocks {len(blocks)}")
        print(f"peak RSS: this process {rss:.0f} MB, promtool {child:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
