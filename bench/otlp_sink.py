"""OTLP/HTTP trace receiver for the fleet bench: decodes every export and counts it, keeps nothing else.

    python bench/otlp_sink.py --port 4318 --horizon 400

``POST /v1/traces`` (``application/x-protobuf``, gzip when the client says so) is decoded with
opentelemetry-proto's ``ExportTraceServiceRequest``, as a collector would, and counted: requests,
bytes, spans, spans by name (``libp2p.connection``, ``libp2p.stream``, ``libp2p.dht.query``, other) and
by SpanKind; the answer is 200 with an empty ``ExportTraceServiceResponse``. A body that does not
decode is answered 400 and counted. ``GET /counts`` returns the counts so far as JSON (the bench
reads them at the window's edges and at each scrape).

It runs as a process of its own so its CPU is not the exporter's nor the harness's. It prints one
``ready`` line with its port, stops by itself after ``--horizon`` seconds (or on SIGTERM/SIGINT), and
then prints one JSON line: its final counts and its own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import resource
import signal
import time
import zlib
from collections import Counter

from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.trace.v1 import trace_pb2

# The exporter's span names (exporter/sinks/otel/spans.py); anything else is counted as "other".
NAMES = ("libp2p.connection", "libp2p.stream", "libp2p.dht.query")
KIND_NAMES = {v: k.removeprefix("SPAN_KIND_").lower() for k, v in trace_pb2.Span.SpanKind.items()}
EMPTY_RESPONSE = ts.ExportTraceServiceResponse().SerializeToString()


class Counts:
    def __init__(self) -> None:
        self.requests = 0
        self.bad_requests = 0
        self.bytes = 0
        self.spans = 0
        self.by_name: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.first_at: float | None = None  # wall clock of the first and last request
        self.last_at: float | None = None

    def add(self, req: ts.ExportTraceServiceRequest) -> None:
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    self.spans += 1
                    self.by_name[span.name if span.name in NAMES else "other"] += 1
                    self.by_kind[KIND_NAMES.get(span.kind, str(span.kind))] += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "bad_requests": self.bad_requests,
            "bytes": self.bytes,
            "spans": self.spans,
            "by_name": dict(self.by_name),
            "by_kind": dict(self.by_kind),
            "first_request_at": self.first_at,
            "last_request_at": self.last_at,
        }


async def serve(args: argparse.Namespace) -> dict[str, object]:
    counts = Counts()
    stop = asyncio.Event()

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        counts.first_at = counts.first_at or now
        counts.last_at = now
        counts.requests += 1
        counts.bytes += len(body)
        try:
            if request.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            req = ts.ExportTraceServiceRequest.FromString(body)
        except (OSError, EOFError, zlib.error, ValueError) as exc:  # DecodeError is a ValueError
            counts.bad_requests += 1
            return web.Response(status=400, text=f"cannot decode: {exc}")
        counts.add(req)
        return web.Response(body=EMPTY_RESPONSE, content_type="application/x-protobuf")

    async def get_counts(_: web.Request) -> web.Response:
        return web.json_response(counts.as_dict())

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/counts", get_counts)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"ready": True, "port": port}), flush=True)
    cpu0, started = time.process_time(), time.monotonic()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), args.horizon)
    serving_s = time.monotonic() - started
    await asyncio.wait_for(runner.cleanup(), 5)
    return {
        **counts.as_dict(),
        "serving_s": round(serving_s, 1),
        "serving_cpu_s": round(time.process_time() - cpu0, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed in the ready line)")
    ap.add_argument("--horizon", type=float, required=True, help="serve this many seconds, then exit")
    args = ap.parse_args()
    result = asyncio.run(serve(args))
    print(json.dumps({"otlp_sink": result}), flush=True)


if __name__ == "__main__":
    main()
