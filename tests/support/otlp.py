"""OTLP trace receivers inside the test process: aiohttp for HTTP, grpcio for gRPC, and in memory.

Both decode each request with ``opentelemetry-proto`` and keep it, so tests assert on what
arrived over the socket, not on what the exporter believes it sent. Both can be told to fail (HTTP
status / gRPC code) or to be slow, to play a collector in trouble.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.support.procs import free_port


@dataclass
class ReceivedSpan:
    span: trace_pb2.Span
    resource: dict[str, Any]

    @property
    def attrs(self) -> dict[str, Any]:
        return attributes(self.span.attributes)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class _Store:
    def __init__(self) -> None:
        self.requests: list[ts.ExportTraceServiceRequest] = []
        self.calls = 0
        self.lock = threading.Lock()
        self.fail = False  # answer with an error
        self.fail_next = 0  # answer this many requests with an error, then accept again
        self.fail_status = 503  # the HTTP status of an error (gRPC: always UNAVAILABLE)
        self.delay_s = 0.0  # answer late
        self.headers: list[dict[str, str]] = []  # each request's headers (gRPC: metadata), lower-case keys

    def failing(self) -> bool:
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
        return self.fail

    def add(self, req: ts.ExportTraceServiceRequest) -> None:
        with self.lock:
            self.requests.append(req)

    def spans(self) -> list[ReceivedSpan]:
        out: list[ReceivedSpan] = []
        with self.lock:
            reqs = list(self.requests)
        for req in reqs:
            for rs in req.resource_spans:
                res = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    out.extend(ReceivedSpan(s, res) for s in ss.spans)
        return out

    def iter_named(self, name: str) -> Iterator[ReceivedSpan]:
        return (s for s in self.spans() if s.span.name == name)


class HttpReceiver(_Store):
    """POST /v1/traces, application/x-protobuf, on 127.0.0.1 in a thread of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        body = await request.read()  # aiohttp undoes Content-Encoding: gzip
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing():
            return web.Response(status=self.fail_status, text="collector unavailable")
        req = ts.ExportTraceServiceRequest()
        req.ParseFromString(body)
        self.add(req)
        return web.Response(
            body=ts.ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> HttpReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class _TraceService(ts_grpc.TraceServiceServicer):
    def __init__(self, store: GrpcReceiver) -> None:
        self.store = store

    def Export(self, request: ts.ExportTraceServiceRequest, context: grpc.ServicerContext) -> Any:
        self.store.calls += 1
        self.store.headers.append({k.lower(): str(v) for k, v in context.invocation_metadata()})
        if self.store.delay_s:
            time.sleep(self.store.delay_s)
        if self.store.failing():
            context.abort(grpc.StatusCode.UNAVAILABLE, "collector unavailable")
        self.store.add(request)
        return ts.ExportTraceServiceResponse()


class GrpcReceiver(_Store):
    """The OTLP TraceService on 127.0.0.1 (grpcio, plaintext)."""

    def __init__(self) -> None:
        super().__init__()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ts_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GrpcReceiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None).wait(10)


class MemoryCollector(_Store):
    """A collector without a socket, given to ``install_tracing(send=...)``: it decodes each request
    the exporter would have sent and keeps it, so tests read the same ``ReceivedSpan`` shape as from
    the real receivers. ``fail`` makes it refuse (the export counts as failed)."""

    def __call__(self, body: bytes) -> bool:
        self.calls += 1
        if self.failing():
            return False
        req = ts.ExportTraceServiceRequest()
        req.ParseFromString(body)
        self.add(req)
        return True
