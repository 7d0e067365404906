"""Per-span cost: the exporter's span path against the SDK path it replaced and a floor that fills the OTLP protobuf directly.

    .venv/bin/python bench/span_cost.py --spans 20000 --repeat 5

All three produce the OTLP ``ExportTraceServiceRequest`` bytes for the same connection spans (name,
kind, start/end, six attributes, one resource): (a) **sdk**: ``Tracer.start_span`` / ``span.end`` into
a ``TracerProvider`` whose processor keeps the finished spans, then ``encode_spans`` (what the SDK's
OTLP exporters send; the exporter's path until 2026-12-07); (b) **exporter**: what the exporter does
now, ``otlp.Span`` records ended into the real ``SpanQueue`` (its locks, its worker thread) whose
worker encodes them with ``encode_request``; the sender keeps the bytes; (c) **floor**:
``trace_pb2.Span`` messages filled directly with the same fields, nothing else. The bytes are decoded
back and compared span by span (names, times, attributes) before anything is timed. CPU-clock
(``process_time``: every thread of the process) medians of interleaved repetitions; no network.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts  # noqa: E402
from opentelemetry.proto.common.v1 import common_pb2  # noqa: E402
from opentelemetry.proto.resource.v1 import resource_pb2  # noqa: E402
from opentelemetry.proto.trace.v1 import trace_pb2  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from exporter.sinks.otel.config import TracingConfig  # noqa: E402
from exporter.sinks.otel.export import Channel, SpanQueue, resource_for  # noqa: E402
from exporter.sinks.otel.metrics import SpanStats  # noqa: E402
from exporter.sinks.otel.otlp import KIND_CLIENT, Span  # noqa: E402

T0 = 1_700_000_000_000_000_000


def attrs(i: int) -> dict[str, Any]:
    return {
        "libp2p.peer.id": f"12D3KooWPeer{i:040d}",
        "network.transport": "tcp",
        "libp2p.security": "/noise",
        "libp2p.muxer": "/yamux/1.0.0",
        "server.address": f"10.0.{i % 250}.{i % 200}",
        "server.port": 4001 + i % 1000,
    }


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def sdk(n: int) -> bytes:
    keep = Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "node-a"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("libp2p-exporter")
    for i in range(n):
        span = tracer.start_span("libp2p.connection", kind=SpanKind.CLIENT, attributes=attrs(i), start_time=T0 + i)
        span.end(end_time=T0 + i + 1_000_000)
    return encode_spans(keep.spans).SerializeToString()


def exporter(n: int) -> bytes:
    # one batch of all n spans, sent when the queue is flushed
    os.environ.update(
        OTEL_BSP_MAX_QUEUE_SIZE=str(n), OTEL_BSP_MAX_EXPORT_BATCH_SIZE=str(n), OTEL_BSP_SCHEDULE_DELAY="3600000"
    )
    bodies: list[bytes] = []

    def keep(body: bytes) -> bool:
        bodies.append(body)
        return True

    queue = SpanQueue(TracingConfig(), keep)
    ch = Channel("node-a", resource_for({"service.name": "node-a"}, "libp2p-exporter", "1"), SpanStats(), None)

    def on_end(span: Span) -> None:
        queue.put(ch, span)

    for i in range(n):
        Span("libp2p.connection", KIND_CLIENT, T0 + i, attrs(i), on_end).end(T0 + i + 1_000_000)
    if not queue.flush(60) or not queue.shutdown(5) or len(bodies) != 1:
        raise SystemExit("the exporter's queue did not send one batch")
    return bodies[0]


def _value(v: Any) -> common_pb2.AnyValue:
    return common_pb2.AnyValue(int_value=v) if isinstance(v, int) else common_pb2.AnyValue(string_value=v)


def floor(n: int) -> bytes:
    req = ts.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.CopyFrom(
        resource_pb2.Resource(
            attributes=[
                common_pb2.KeyValue(key=k, value=_value(v))
                for k, v in Resource.create({"service.name": "node-a"}).attributes.items()
            ]
        )
    )
    ss = rs.scope_spans.add()
    ss.scope.name = "libp2p-exporter"
    trace_id = os.urandom(16)
    for i in range(n):
        s = ss.spans.add()
        s.trace_id = trace_id
        s.span_id = (i + 1).to_bytes(8, "big")
        s.name = "libp2p.connection"
        s.kind = trace_pb2.Span.SPAN_KIND_CLIENT
        s.start_time_unix_nano = T0 + i
        s.end_time_unix_nano = T0 + i + 1_000_000
        s.attributes.extend(common_pb2.KeyValue(key=k, value=_value(v)) for k, v in attrs(i).items())
    return req.SerializeToString()


def spans_of(body: bytes) -> list[tuple[str, int, int, dict[str, Any]]]:
    req = ts.ExportTraceServiceRequest.FromString(body)
    out = []
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                a = {kv.key: kv.value.string_value or kv.value.int_value for kv in s.attributes}
                out.append((s.name, s.start_time_unix_nano, s.end_time_unix_nano, a))
    return sorted(out, key=lambda x: x[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not spans_of(sdk(200)) == spans_of(exporter(200)) == spans_of(floor(200)):
        raise SystemExit("the three paths do not produce the same spans")
    times: dict[str, list[float]] = {"sdk": [], "exporter": [], "floor": []}
    for _ in range(args.repeat):
        for name, fn in (("sdk", sdk), ("exporter", exporter), ("floor", floor)):
            t0 = time.process_time()
            body = fn(args.spans)
            times[name].append(time.process_time() - t0)
            del body
    per = {k: statistics.median(v) / args.spans * 1e6 for k, v in times.items()}
    print(
        f"spans {args.spans} x {args.repeat}: sdk {per['sdk']:.1f} us/span, exporter {per['exporter']:.1f} us/span, "
        f"floor {per['floor']:.1f} us/span; exporter/floor {per['exporter'] / per['floor']:.2f}, "
        f"sdk/exporter {per['sdk'] / per['exporter']:.2f}; load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
