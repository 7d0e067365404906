"""Getting ended spans to the collector: one bounded, counted queue and one worker thread per sink.

Spans wait in the queue until a batch is full or the schedule delay passes (``OTEL_BSP_*``, as the
SDK's batch processor reads them), then go out as one ``ExportTraceServiceRequest`` over OTLP/HTTP
or gRPC. Each node may hold at most ``OTEL_BSP_MAX_QUEUE_SIZE`` spans in the queue: past that a span
is counted as dropped (``queue_full``), so a collector that is down costs counted spans, never
memory, a stalled pipeline or another node's room. What each batch became is counted per node and
told to the node's exemplars. A failing collector is logged when the outage starts and when it ends.

The transport reads the standard variables for what the flags leave unset:
``OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,CERTIFICATE,CLIENT_KEY,
CLIENT_CERTIFICATE,INSECURE}``.
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from exporter.pipeline.exemplars import ExportedSpans
from exporter.sinks.otel.config import TracingConfig, env, http_traces_url
from exporter.sinks.otel.metrics import SpanStats
from exporter.sinks.otel.otlp import Resource, Span, encode_request

log = logging.getLogger(__name__)

# Sends one serialized ExportTraceServiceRequest; True when the collector accepted it.
Send = Callable[[bytes], bool]

_RETRY_HTTP = frozenset({429, 502, 503, 504})


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number; using %g", name, raw, default)
        return default
    if value <= 0:
        log.warning("%s=%r is not positive; using %g", name, raw, default)
        return default
    return value


def _traces_env(suffix: str) -> str | None:
    return env(f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}")


def parse_headers(raw: str | None) -> dict[str, str]:
    """``k1=v1,k2=v2`` with percent-encoded values (the OTLP exporter spec); bad entries are skipped."""
    headers: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            log.warning("OTLP headers: ignoring %r (not key=value)", item.strip()[:64])
            continue
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SystemExit(f"libp2p-exporter: cannot read the OTLP {what} {path!r}: {exc.strerror}") from exc


@dataclass
class Transport:
    """Where and how spans go: the flags first, then the OTEL_* environment, then OTLP's defaults."""

    protocol: str
    endpoint: str
    timeout_s: float
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False
    insecure: bool = False
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @classmethod
    def of(cls, cfg: TracingConfig) -> Transport:
        compression = (_traces_env("COMPRESSION") or "none").lower()
        if compression not in ("gzip", "none"):
            raise SystemExit(f"libp2p-exporter: unsupported OTLP compression {compression!r} (use gzip or none)")
        timeout = cfg.timeout_s if cfg.timeout_s is not None else _env_number_any("TIMEOUT", 10.0)
        ca = _traces_env("CERTIFICATE")
        client_cert, client_key = _traces_env("CLIENT_CERTIFICATE"), _traces_env("CLIENT_KEY")
        for path, what in ((ca, "certificate"), (client_cert, "client certificate"), (client_key, "client key")):
            _read(path, what)  # a path that cannot be read is a user error, said now and once
        if cfg.protocol == "grpc":
            endpoint = cfg.endpoint or _traces_env("ENDPOINT") or "http://localhost:4317"
            insecure_env = (_traces_env("INSECURE") or "").lower() == "true"
            scheme = urlparse(endpoint).scheme if "://" in endpoint else ""
            insecure = scheme == "http" or (not scheme and insecure_env)
        else:
            if cfg.endpoint:
                endpoint = http_traces_url(cfg.endpoint)
            elif env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
                endpoint = str(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))  # signal-specific: used as given
            elif env("OTEL_EXPORTER_OTLP_ENDPOINT"):
                endpoint = str(env("OTEL_EXPORTER_OTLP_ENDPOINT")).rstrip("/") + "/v1/traces"
            else:
                endpoint = "http://localhost:4318/v1/traces"
            insecure = False
        return cls(
            protocol=cfg.protocol or "http/protobuf",
            endpoint=endpoint,
            timeout_s=timeout,
            headers=parse_headers(_traces_env("HEADERS")),
            gzip=compression == "gzip",
            insecure=insecure,
            ca_file=ca,
            client_cert=client_cert,
            client_key=client_key,
        )


def _env_number_any(suffix: str, default: float) -> float:
    name = next(
        (n for n in (f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}") if os.environ.get(n)),
        "",
    )
    return _env_number(name, default) if name else default


def _backoff(attempt: int) -> float:
    return min(8.0, 0.25 * 2.0**attempt) * (0.5 + random.random() / 2)


def _with_retries(once: Callable[[float], tuple[bool, bool, str]], timeout_s: float, stop: threading.Event) -> bool:
    """Call ``once(seconds left)`` -> (accepted, worth retrying, why) until it is accepted, says not to
    retry, the timeout would pass during the next backoff, or the queue is shutting down."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        ok, retry, why = once(max(0.05, deadline - time.monotonic()))
        if ok:
            return True
        pause = _backoff(attempt)
        attempt += 1
        if not retry or time.monotonic() + pause >= deadline or stop.is_set():
            log.debug("OTLP export failed: %s", why)
            return False
        stop.wait(pause)


class HttpSender:
    """OTLP/HTTP with protobuf bodies over one kept-alive session; transient failures retried until the timeout."""

    def __init__(self, t: Transport, stop: threading.Event) -> None:
        import requests

        self.t = t
        self.stop = stop
        self.session = requests.Session()
        self.session.headers.update({**t.headers, "Content-Type": "application/x-protobuf"})
        if t.gzip:
            self.session.headers["Content-Encoding"] = "gzip"
        if t.ca_file:
            self.session.verify = t.ca_file
        if t.client_cert:
            self.session.cert = (t.client_cert, t.client_key) if t.client_key else t.client_cert
        self._error = requests.RequestException

    def __call__(self, body: bytes) -> bool:
        data = gzip.compress(body, 5) if self.t.gzip else body

        def once(left: float) -> tuple[bool, bool, str]:
            try:
                resp = self.session.post(self.t.endpoint, data=data, timeout=left)
            except self._error as exc:
                return False, True, type(exc).__name__
            return resp.ok, resp.status_code in _RETRY_HTTP, f"HTTP {resp.status_code}"

        return _with_retries(once, self.t.timeout_s, self.stop)

    def close(self) -> None:
        self.session.close()


class GrpcSender:
    """The OTLP TraceService over gRPC; the request is sent as the bytes already serialized."""

    _RETRY = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS")

    def __init__(self, t: Transport, stop: threading.Event) -> None:
        import grpc

        self.t = t
        self.stop = stop
        self._grpc = grpc
        target = t.endpoint.split("://", 1)[1] if "://" in t.endpoint else t.endpoint
        target = target.rstrip("/")
        if t.insecure:
            self.channel = grpc.insecure_channel(target)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(t.ca_file, "certificate"),
                private_key=_read(t.client_key, "client key"),
                certificate_chain=_read(t.client_cert, "client certificate"),
            )
            self.channel = grpc.secure_channel(target, creds)
        self.export = self.channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,  # the body is already the serialized request
            response_deserializer=None,
        )
        self.metadata = tuple(t.headers.items())
        self.retry = frozenset(getattr(grpc.StatusCode, n) for n in self._RETRY)

    def __call__(self, body: bytes) -> bool:
        grpc = self._grpc
        compression = grpc.Compression.Gzip if self.t.gzip else None

        def once(left: float) -> tuple[bool, bool, str]:
            try:
                self.export(body, timeout=left, metadata=self.metadata, compression=compression)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                return False, code in self.retry, f"gRPC {code}"
            return True, False, ""

        return _with_retries(once, self.t.timeout_s, self.stop)

    def close(self) -> None:
        self.channel.close()


def make_sender(cfg: TracingConfig, stop: threading.Event) -> Send:
    t = Transport.of(cfg)
    return GrpcSender(t, stop) if t.protocol == "grpc" else HttpSender(t, stop)


class Channel:
    """One node's way into the queue: its resource, its counters, its exemplars."""

    __slots__ = ("exported", "failing", "name", "resource", "stats")

    def __init__(self, name: str, resource: Resource, stats: SpanStats, exported: ExportedSpans | None) -> None:
        self.name = name
        self.resource = resource
        self.stats = stats
        self.exported = exported
        self.failing = 0  # consecutive failed batches, to log an outage once


class SpanQueue:
    """The bounded queue of ended spans and the thread that exports them in batches."""

    def __init__(
        self, cfg: TracingConfig, send: Send | None = None, *, name: str = "otel-export", max_queue: int | None = None
    ) -> None:
        # max_queue: the spans one Channel's stats may have queued (each node its own unless they share stats)
        self.max_queue = max_queue or int(_env_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048))
        self.max_batch = int(_env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512))
        self.delay_s = _env_number("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self._stop = threading.Event()
        self.send = send if send is not None else make_sender(cfg, self._stop)
        self._q: deque[tuple[Channel, Span]] = deque()
        self._cv = threading.Condition()
        self._queued = 0  # spans ever queued
        self._taken = 0  # spans ever taken out of the queue
        self._done = 0  # spans ever through the sender (sent or failed)
        self._flush_to = 0  # export now, up to this many queued
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, ch: Channel, span: Span) -> None:
        """Called when a span ends (the ingest thread): queue it, or count it dropped when its node's share is full."""
        stats = ch.stats
        with stats.lock:
            if stats.queued >= self.max_queue or self._closed:
                stats.dropped["queue_full"] += 1
                if ch.exported is not None:
                    ch.exported.failed(span.span_id)
                return
            stats.queued += 1
        with self._cv:
            self._q.append((ch, span))
            self._queued += 1
            if len(self._q) >= self.max_batch:
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                deadline = time.monotonic() + self.delay_s
                # wait for a full batch, the schedule delay, a flush or the end
                while not self._closed and len(self._q) < self.max_batch and self._taken >= self._flush_to:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                batch = [self._q.popleft() for _ in range(min(self.max_batch, len(self._q)))]
                self._taken += len(batch)
                if not batch and self._closed:
                    self._cv.notify_all()
                    return
            if batch:
                self._export(batch)
                with self._cv:
                    self._done += len(batch)
                    self._cv.notify_all()

    def _export(self, batch: list[tuple[Channel, Span]]) -> None:
        groups: dict[int, tuple[Channel, list[Span]]] = {}
        for ch, span in batch:
            groups.setdefault(id(ch), (ch, []))[1].append(span)
        try:
            body = encode_request((ch.resource, spans) for ch, spans in groups.values()).SerializeToString()
            ok = bool(self.send(body))
        except Exception as exc:  # a sender bug must not kill the export thread
            log.warning("OTLP export raised: %s", exc)
            ok = False
        for ch, spans in groups.values():
            self._account(ch, spans, ok)

    def _account(self, ch: Channel, spans: list[Span], ok: bool) -> None:
        if ch.exported is not None:
            for span in spans:
                if ok:
                    ch.exported.exported(span.span_id, span.trace_id)
                else:
                    ch.exported.failed(span.span_id)
        stats = ch.stats
        with stats.lock:
            stats.queued = max(0, stats.queued - len(spans))
            if ok:
                stats.batches["success"] += 1
                stats.exported += len(spans)
            else:
                stats.batches["failure"] += 1
                stats.export_failed += len(spans)
        if not ok and not ch.failing:
            log.warning(
                "node %s: OTLP span export failing (collector down, slow or refusing); spans are dropped and "
                "counted in libp2p_exporter_spans_export_failed_total until it recovers",
                ch.name,
            )
        elif ok and ch.failing:
            log.info("node %s: OTLP span export recovered after %d failed batch(es)", ch.name, ch.failing)
        ch.failing = 0 if ok else ch.failing + 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Export what is queued now; True when it all went through the sender within ``timeout_s``."""
        end = time.monotonic() + timeout_s
        with self._cv:
            target = self._queued
            self._flush_to = max(self._flush_to, target)
            self._cv.notify_all()
            while self._done < target:
                left = end - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cv.wait(left)
        return True

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Export what is queued (waiting at most ``timeout_s``), then stop the thread; later spans are dropped."""
        done = self.flush(timeout_s)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if not done:
            self._stop.set()  # cut the sender's retries short
        self._thread.join(max(0.1, timeout_s / 10) if not done else 5.0)
        close = getattr(self.send, "close", None)
        if close is not None and not self._thread.is_alive():
            close()
        return done


def resource_for(attributes: dict[str, Any], scope: str, version: str) -> Resource:
    """A node's resource: ``OTEL_RESOURCE_ATTRIBUTES`` first, the exporter's own attributes over them."""
    merged: dict[str, Any] = {}
    for item in (os.environ.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            merged[unquote(key.strip())] = unquote(value.strip())
    merged.update(attributes)
    return Resource(merged, scope, version)
