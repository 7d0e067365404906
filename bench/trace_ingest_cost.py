"""Tracing's cost per State on the loop: a live hub fed generator States with tracing on or off.

    nice -n 5 .venv/bin/python bench/trace_ingest_cost.py --share 0.015625
    nice -n 5 .venv/bin/python bench/trace_ingest_cost.py --share 1
    nice -n 5 .venv/bin/python bench/trace_ingest_cost.py --off

``--nodes`` SyntheticNodes (50 connections x 3 streams, 8 DHT buckets) each give ``--states`` States;
all are framed and decoded first, then ingested round-robin into ``build_hub(live=True)`` with
tracing installed (spans kept at ``--share`` on top of the default sampling, as the ingest governor
sets it) and the requests thrown away. Reported per State: the ingesting thread's CPU
(``time.thread_time``: what the sessions' loop would spend) and the whole process's
(``time.process_time``, the export thread included, after a flush). Works against the SDK-based
sink of earlier commits too (``span_exporter=``), to compare the two on one machine.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.sinks.otel.config import TracingConfig
from exporter.sinks.otel.install import install_tracing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=40)
    ap.add_argument("--states", type=int, default=30)
    ap.add_argument("--share", type=float, default=1.0, help="share of spans kept (the governor's lever)")
    ap.add_argument("--off", action="store_true", help="tracing off: the baseline")
    args = ap.parse_args()
    msgs: dict[str, list[Any]] = {}
    for i in range(args.nodes):
        node = SyntheticNode(connections=50, streams_per_conn=3, buckets=8, seed=100 + i)
        out = [node.runtime(), node.config_response(), node.state()]
        for _ in range(args.states):
            node.step()
            out.append(node.state())
        msgs[f"n{i}"] = [d for m in out for d in decode_segments(encode_segment(m), versioned=True).messages]
    hub = build_hub(live=True)
    handle = None
    if not args.off:
        if "send" in inspect.signature(install_tracing).parameters:
            handle = install_tracing(hub, cfg=TracingConfig(), send=lambda _body: True)
        else:  # the SDK-based sink of earlier commits
            from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

            class Null(SpanExporter):
                def export(self, spans: Any) -> SpanExportResult:
                    return SpanExportResult.SUCCESS

            handle = install_tracing(hub, cfg=TracingConfig(), span_exporter=lambda _n: Null())  # type: ignore[call-arg]
        hub.span_share.value = args.share
    c0, p0 = time.thread_time(), time.process_time()
    longest = max(len(v) for v in msgs.values())
    for k in range(longest):
        for name, v in msgs.items():
            if k < len(v):
                hub.ingest(name, v[k])
    c1 = time.thread_time()
    if handle is not None:
        handle.flush(30)
    p1 = time.process_time()
    states = args.nodes * (args.states + 1)
    what = "off" if args.off else f"share {args.share:g}"
    print(
        f"tracing {what}: loop {1e3 * (c1 - c0) / states:.3f} ms/State, process {1e3 * (p1 - p0) / states:.3f} ms/State"
    )
    if handle is not None:
        handle.shutdown(5)


if __name__ == "__main__":
    main()
