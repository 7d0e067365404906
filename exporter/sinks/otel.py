"""OpenTelemetry spans from snapshots: each connection's life, its streams, and each DHT query.

Metrics say how many; spans say which one and when. The sink listens to the hub (``hub.listeners``)
and turns the snapshot diffs into spans with explicit start and end times taken from the node's own
timestamps, so a span shows when a connection really opened, not when the exporter noticed.

One TracerProvider per observed node (its resource names that node), batched OTLP export over
HTTP/protobuf or gRPC. Export runs in the SDK's worker thread: a collector that is down or slow
costs dropped spans and counted failures, never a stalled pipeline or missing metrics.

Policy at shutdown: spans still open are *ended* at the node's last snapshot instant, marked
``libp2p.span.open_at_shutdown=true`` and ``libp2p.end.inferred=true``, and flushed (bounded wait).

The OpenTelemetry packages are the optional extra ``otel``; without them the flags still parse and
enabling tracing fails with one clear message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from exporter import __version__
from exporter.diff import Ended
from exporter.families import Scoped
from exporter.model import STATUS_NAMES, ConnView, Snapshot, StreamView
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.multiaddr import Addr, parse
from exporter.subsystems.base import Subsystem

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanContext, Tracer

    from exporter.node import Hub, NodeState, SnapshotUpdate

log = logging.getLogger(__name__)

SPAN_CONNECTION = "libp2p.connection"
SPAN_STREAM = "libp2p.stream"
SPAN_DHT_QUERY = "libp2p.dht.query"
DHT_QUERY_EVENTS = frozenset({"InboundDHTQuery", "OutboundDHTQuery"})
PROTOCOLS = ("http/protobuf", "grpc")
MAX_PEERS_PER_QUERY = 64  # peer ids listed on one DHT query span
_MS = 1_000_000  # ns per ms


# -- configuration ---------------------------------------------------------------------------


@dataclass
class TracingConfig:
    """What ``--otlp.*`` / ``--tracing.*`` and the OTEL_* environment asked for."""

    endpoint: str | None = None  # None: the SDK reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT itself
    protocol: str = "http/protobuf"
    timeout_s: float | None = None  # None: OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, else 10 s
    service_name: str | None = None  # None: OTEL_SERVICE_NAME, else derived from the implementation
    sample_connections: float = 1.0
    sample_streams: float = 1.0
    sample_dht: float = 1.0
    max_open_spans: int = 10_000  # per node
    shutdown_timeout_s: float = 5.0


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        log.warning("%s is not an integer; using %d", name, default)
        return default


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"sampling ratio must be within 0..1, got {text}")
    return value


def add_otel_flags(p: argparse.ArgumentParser) -> None:
    """Tracing flags; tracing is on when an endpoint is given here or in the standard environment."""
    g = p.add_argument_group("tracing (OpenTelemetry, off unless an OTLP endpoint is set)")
    g.add_argument(
        "--otlp.endpoint",
        dest="otlp_endpoint",
        metavar="URL",
        default=None,
        help="OTLP collector URL, e.g. http://127.0.0.1:4318 (HTTP; /v1/traces is added when the URL has "
        "no path) or http://127.0.0.1:4317 (gRPC). Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / "
        "OTEL_EXPORTER_OTLP_ENDPOINT; tracing is off when none is set",
    )
    g.add_argument(
        "--otlp.protocol",
        dest="otlp_protocol",
        choices=PROTOCOLS,
        default=None,
        help="http/protobuf (default) or grpc; default from OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL",
    )
    g.add_argument(
        "--otlp.timeout",
        dest="otlp_timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help="seconds per export request (default: OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, else 10)",
    )
    g.add_argument(
        "--tracing.service-name",
        dest="tracing_service_name",
        metavar="NAME",
        default=None,
        help="service.name of each node's resource (default: OTEL_SERVICE_NAME, else the node's implementation)",
    )
    g.add_argument(
        "--tracing.sample.connections",
        dest="tracing_sample_connections",
        metavar="RATIO",
        type=_ratio,
        default=1.0,
        help="share of connection spans kept, 0..1 (default 1)",
    )
    g.add_argument(
        "--tracing.sample.streams",
        dest="tracing_sample_streams",
        metavar="RATIO",
        type=_ratio,
        default=1.0,
        help="share of stream spans kept among kept connections, 0..1 (default 1)",
    )
    g.add_argument(
        "--tracing.sample.dht",
        dest="tracing_sample_dht",
        metavar="RATIO",
        type=_ratio,
        default=1.0,
        help="share of DHT query spans kept, 0..1 (default 1)",
    )
    g.add_argument(
        "--tracing.max-open-spans",
        dest="tracing_max_open_spans",
        metavar="N",
        type=int,
        default=10_000,
        help="connection + stream spans held open per node; past it new ones are dropped and counted",
    )


def config_from_args(args: argparse.Namespace) -> TracingConfig | None:
    """The tracing config, or None when tracing is off (no endpoint anywhere, or OTEL_SDK_DISABLED)."""
    endpoint = getattr(args, "otlp_endpoint", None)
    if not endpoint and not _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    if (_env("OTEL_SDK_DISABLED") or "").lower() == "true":
        log.info("OTEL_SDK_DISABLED=true: tracing stays off")
        return None
    protocol = (
        getattr(args, "otlp_protocol", None)
        or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in PROTOCOLS:
        raise SystemExit(f"libp2p-exporter: unsupported OTLP protocol {protocol!r} (use {' or '.join(PROTOCOLS)})")
    return TracingConfig(
        endpoint=endpoint or None,
        protocol=protocol,
        timeout_s=getattr(args, "otlp_timeout", None),
        service_name=getattr(args, "tracing_service_name", None) or _env("OTEL_SERVICE_NAME"),
        sample_connections=getattr(args, "tracing_sample_connections", 1.0),
        sample_streams=getattr(args, "tracing_sample_streams", 1.0),
        sample_dht=getattr(args, "tracing_sample_dht", 1.0),
        max_open_spans=max(0, getattr(args, "tracing_max_open_spans", 10_000)),
    )


def http_traces_url(endpoint: str) -> str:
    """A base URL gets the OTLP/HTTP traces path; a URL that has a path is used as given."""
    if urlparse(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


# -- self-metrics ----------------------------------------------------------------------------


@dataclass
class SpanStats:
    """One node's tracing counters, exported as ``libp2p_exporter_spans_*`` by ``TracingSubsystem``."""

    started: Counter[str] = field(default_factory=Counter)  # by kind
    sampled_out: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    open_spans: int = 0
    queued: int = 0  # ended, handed to the batch processor, not yet through an export
    exported: int = 0
    export_failed: int = 0  # spans in failed batches
    batches: Counter[str] = field(default_factory=Counter)  # success | failure
    lock: threading.Lock = field(default_factory=threading.Lock)


KINDS = ("connection", "stream", "dht_query")
DROP_REASONS = ("open_cap", "queue_full", "bad_event", "error")


class QueueGate:
    """A span processor in front of the batch processor that bounds and counts its queue.

    The SDK's batch queue drops spans silently when full (a collector down for long); here each
    span past the limit is counted as dropped (``queue_full``) before it reaches the queue.
    """

    def __init__(self, inner: Any, stats: SpanStats, limit: int) -> None:
        self.inner = inner
        self.stats = stats
        self.limit = limit

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Any) -> None:
        """Part of the SDK's processor interface; nothing to do before the end."""

    def on_end(self, span: Any) -> None:
        with self.stats.lock:
            if self.stats.queued >= self.limit:
                self.stats.dropped["queue_full"] += 1
                return
            self.stats.queued += 1
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class TracingSubsystem(Subsystem):
    """Puts each node's SpanStats in the hub's Prometheus output (always, like the other self-metrics)."""

    name = "tracing"
    always = True

    def new_accumulator(self) -> SpanStats:
        return SpanStats()

    def collect(self, acc: SpanStats, node: NodeState, out: Scoped) -> None:
        with acc.lock:
            for kind in KINDS:
                out.counter(
                    "libp2p_exporter_spans_started",
                    "Spans started for this node, by kind (connection, stream, dht_query).",
                    acc.started.get(kind, 0),
                    {"kind": kind},
                )
                out.counter(
                    "libp2p_exporter_spans_sampled_out",
                    "Spans not recorded because sampling left them out, by kind.",
                    acc.sampled_out.get(kind, 0),
                    {"kind": kind},
                )
            out.counters(
                "libp2p_exporter_spans_dropped",
                "Spans not recorded: open_cap (too many open spans), queue_full (export queue full while "
                "the collector lags), bad_event (DHT event without a usable duration), error (a sink fault).",
                "reason",
                acc.dropped,
                DROP_REASONS,
            )
            out.gauge("libp2p_exporter_spans_open", "Connection and stream spans open now.", acc.open_spans)
            out.counter("libp2p_exporter_spans_exported", "Spans the collector accepted.", acc.exported)
            out.counter(
                "libp2p_exporter_spans_export_failed",
                "Spans in export batches that failed (collector down, slow or refusing).",
                acc.export_failed,
            )
            for result in ("success", "failure"):
                out.counter(
                    "libp2p_exporter_span_exports",
                    "OTLP export requests, by result.",
                    acc.batches.get(result, 0),
                    {"result": result},
                )


class CountingExporter:
    """Wraps an OTLP span exporter to count what reached the collector and what did not.

    The SDK's own flush result says nothing about delivery; the exporter's result per batch does.
    Failures are logged once when they start and once when export recovers, not per batch.
    """

    def __init__(self, inner: Any, stats: SpanStats, node: str = "") -> None:
        self.inner = inner
        self.stats = stats
        self.node = node
        self.failing = 0  # consecutive failed batches

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the worker thread
            log.warning("OTLP export raised: %s", exc)
            result = SpanExportResult.FAILURE
        ok = result == SpanExportResult.SUCCESS
        with self.stats.lock:
            self.stats.queued = max(0, self.stats.queued - len(spans))
            if ok:
                self.stats.batches["success"] += 1
                self.stats.exported += len(spans)
            else:
                self.stats.batches["failure"] += 1
                self.stats.export_failed += len(spans)
        if not ok and not self.failing:
            log.warning(
                "node %s: OTLP span export failing (collector down, slow or refusing); spans are dropped and "
                "counted in libp2p_exporter_spans_export_failed_total until it recovers",
                self.node,
            )
        elif ok and self.failing:
            log.info("node %s: OTLP span export recovered after %d failed batch(es)", self.node, self.failing)
        self.failing = 0 if ok else self.failing + 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def make_span_exporter(cfg: TracingConfig) -> Any:
    """The OTLP exporter for ``cfg.protocol``; unset options fall to the standard OTEL_* variables."""
    kwargs: dict[str, Any] = {}
    if cfg.timeout_s is not None:
        kwargs["timeout"] = cfg.timeout_s
    if cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=cfg.endpoint, **kwargs)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=http_traces_url(cfg.endpoint) if cfg.endpoint else None, **kwargs)


# -- the span model --------------------------------------------------------------------------


def keep(key: bytes | str, ratio: float) -> bool:
    """Deterministic sampling by id: the same connection is always in or always out."""
    if ratio >= 1.0:
        return True
    if ratio <= 0.0:
        return False
    raw = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") < ratio * 2.0**64


def _num(value: Any) -> float | None:
    """DHT event numbers often arrive as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _addr_attrs(prefix: str, addr: Addr) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if addr.host:
        attrs[f"{prefix}.address"] = addr.host
    if addr.port is not None:
        attrs[f"{prefix}.port"] = addr.port
    return attrs


def resource_attributes(node: NodeState, cfg: TracingConfig) -> dict[str, Any]:
    """The observed node as an OTel resource: the exporter is only the reporter."""
    rt = node.runtime
    impl = rt.implementation if rt and rt.implementation else "libp2p"
    attrs: dict[str, Any] = {
        "service.name": cfg.service_name or impl,
        "service.instance.id": (rt.peer_id if rt and rt.peer_id else "") or node.name,
        "libp2p.implementation": impl,
        "libp2p.exporter.node": node.name,
        "libp2p.exporter.version": __version__,
    }
    if rt and rt.version:
        attrs["service.version"] = rt.version
        attrs["libp2p.implementation.version"] = rt.version
    if rt and rt.platform:
        attrs["libp2p.platform"] = rt.platform
    if rt and rt.peer_id:
        attrs["libp2p.peer.id.local"] = rt.peer_id
    for key, value in node.labels.items():
        attrs.setdefault(f"libp2p.exporter.label.{key}", value)
    return attrs


@dataclass
class _PendingStream:
    view: StreamView
    conn_id: bytes
    first_seen: int
    ended: Ended[StreamView] | None = None


class NodeTracer:
    """One node's TracerProvider and the spans it holds open between snapshots."""

    def __init__(self, node: NodeState, cfg: TracingConfig, stats: SpanStats) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        self.cfg = cfg
        self.stats = stats
        self.name = node.name
        self.identity = node.runtime.peer_id if node.runtime else ""
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create(resource_attributes(node, cfg)), sampler=ALWAYS_ON, shutdown_on_exit=False
        )
        self.exporter = CountingExporter(make_span_exporter(cfg), stats, node.name)
        queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        batch = BatchSpanProcessor(self.exporter, max_queue_size=queue)  # type: ignore[arg-type]
        self.provider.add_span_processor(QueueGate(batch, stats, queue))  # type: ignore[arg-type]
        self.tracer: Tracer = self.provider.get_tracer("libp2p-exporter", __version__)
        self.conns: dict[bytes, Span] = {}
        self.pending: dict[bytes, tuple[ConnView, int]] = {}  # dialling, open_ts unknown: (view, first seen)
        self.pending_streams: dict[bytes, _PendingStream] = {}  # streams of those connections
        self.streams: dict[bytes, Span] = {}
        self.recent: OrderedDict[bytes, SpanContext] = OrderedDict()  # ended connections, for relay links
        self.last_ms = 0
        self.last_snapshot: Snapshot | None = None
        self._warned_cap = False

    # -- bookkeeping ----------------------------------------------------------------------
    def _room(self) -> bool:
        if (
            len(self.conns) + len(self.pending) + len(self.streams) + len(self.pending_streams)
            < self.cfg.max_open_spans
        ):
            return True
        if not self._warned_cap:
            log.warning(
                "node %s: %d spans open; dropping new ones (--tracing.max-open-spans)",
                self.name,
                self.cfg.max_open_spans,
            )
            self._warned_cap = True
        return False

    def _count(self, what: str, kind: str) -> None:
        with self.stats.lock:
            getattr(self.stats, what)[kind] += 1
        self._sync_open()

    def _sync_open(self) -> None:
        with self.stats.lock:
            self.stats.open_spans = len(self.conns) + len(self.pending) + len(self.streams) + len(self.pending_streams)

    # -- snapshots ------------------------------------------------------------------------
    def on_update(self, update: SnapshotUpdate) -> None:
        from exporter.diff import Ended as _Ended

        diff, cur = update.diff, update.cur
        now = cur.instant_ts or self.last_ms
        self.last_ms = max(self.last_ms, now)
        self.last_snapshot = cur
        ended_conns: list[Ended[ConnView]] = list(diff.closed_conns)
        ended_streams: list[Ended[StreamView]] = list(diff.closed_streams)
        self._resolve_pending(cur)
        for c in diff.opened_conns:
            self._start_conn(c, now)
        if diff.first:
            # The first State lists connections that closed before we watched; their whole life is
            # known, so they get spans too (metrics skip them to avoid counting them twice).
            seen = {c.id for c in diff.opened_conns}
            for c in cur.conns.values():
                if c.closed and c.id not in seen:
                    self._start_conn(c, now)
                    ended_conns.append(_Ended(c, c.close_ts or now, c.close_ts == 0))
        for s in diff.opened_streams:
            self._start_stream(s, diff.stream_conn.get(s.key), now)
        if diff.first:
            seen_s = {s.key for s in diff.opened_streams}
            for c in cur.conns.values():
                for s in c.streams.values():
                    if s.key not in seen_s and (s.closed or c.closed):
                        self._start_stream(s, c, now)
                        end = s.close_ts or c.close_ts or now
                        ended_streams.append(_Ended(s, end, s.close_ts == 0))
        for e in ended_streams:
            self._end_stream(e, diff.stream_conn.get(e.view.key))
        for ec in ended_conns:
            self._end_conn(ec)

    def _start_conn(self, c: ConnView, now: int) -> None:
        if c.id in self.conns or c.id in self.pending:
            return
        if not keep(c.id, self.cfg.sample_connections):
            self._count("sampled_out", "connection")
            return
        if not self._room():
            self._count("dropped", "open_cap")
            return
        if not c.open_ts and not c.closed:
            # Still dialling (OPENING, no open_ts yet): wait for the real open_ts rather than guess.
            self.pending[c.id] = (c, now)
            self._sync_open()
            return
        self._open_conn(c, now)

    def _resolve_pending(self, cur: Snapshot) -> None:
        """Start the spans of dialling connections whose open_ts has now appeared."""
        for cid, (_, first_seen) in list(self.pending.items()):
            view = cur.conns.get(cid)
            if view is not None and view.open_ts:
                del self.pending[cid]
                self._open_conn(view, first_seen)

    def _open_conn(self, c: ConnView, now: int) -> Span:
        """Start the connection's span (at open_ts, else at ``now`` marked inferred)."""
        from opentelemetry.trace import Link, SpanKind

        self.pending.pop(c.id, None)
        outbound = c.dir == "outbound"
        local, remote = parse(c.local_addr), parse(c.remote_addr)
        attrs: dict[str, Any] = {
            "libp2p.connection.id": c.id.hex(),
            "libp2p.connection.direction": c.dir,
            "libp2p.connection.role": "initiator" if outbound else "responder",
            "libp2p.transport": c.transport,
            "libp2p.relayed": bool(c.relayed_over) or remote.relayed,
        }
        if c.peer_id:
            attrs["libp2p.peer.id"] = c.peer_id
        if c.local_addr:
            attrs["libp2p.multiaddr.local"] = c.local_addr
        if c.remote_addr:
            attrs["libp2p.multiaddr.remote"] = c.remote_addr
        transport = remote.transport or local.transport
        if transport:
            attrs["network.transport"] = transport
        net_type = remote.network_type or local.network_type or {"ip4": "ipv4", "ip6": "ipv6"}.get(c.ip_version, "")
        if net_type:
            attrs["network.type"] = net_type
        attrs.update(_addr_attrs("network.peer", remote))
        attrs.update(_addr_attrs("network.local", local))
        # A connection has a role, so client/server fits: the initiator is the client.
        client, server = (local, remote) if outbound else (remote, local)
        attrs.update(_addr_attrs("client", client))
        attrs.update(_addr_attrs("server", server))
        links = []
        if c.relayed_over:
            attrs["libp2p.connection.relayed_over"] = c.relayed_over.hex()
            relay = self.conns.get(c.relayed_over)
            ctx = relay.get_span_context() if relay is not None else self.recent.get(c.relayed_over)
            if ctx is not None:
                links.append(Link(ctx, {"libp2p.link.type": "relayed_over"}))
        start = c.open_ts or now
        if not c.open_ts:
            attrs["libp2p.start.inferred"] = True
        span = self.tracer.start_span(
            SPAN_CONNECTION,
            kind=SpanKind.CLIENT if outbound else SpanKind.SERVER,
            attributes=attrs,
            links=links,
            start_time=start * _MS,
        )
        self.conns[c.id] = span
        self._count("started", "connection")
        for key, waiting in [(k, w) for k, w in self.pending_streams.items() if w.conn_id == c.id]:
            del self.pending_streams[key]
            self._open_stream(waiting.view, span, c.id, c.open_ts or waiting.first_seen)
            if waiting.ended is not None:
                self._end_stream(waiting.ended, c)
        return span

    def _end_conn(self, e: Ended[ConnView]) -> None:
        from opentelemetry.trace import Status, StatusCode

        c = e.view
        if c.id in self.pending:  # ended before its open_ts was known
            self._open_conn(c, self.pending[c.id][1])
        span = self.conns.pop(c.id, None)
        if span is None:
            return
        start_ms = c.open_ts or e.end_ms
        end_ms = max(e.end_ms, start_ms)
        attrs: dict[str, Any] = {
            "libp2p.connection.status": STATUS_NAMES.get(c.status, str(c.status)),
            "libp2p.connection.security": c.security,
            "libp2p.connection.muxer": c.muxer,
            "libp2p.end.inferred": e.inferred,
        }
        if c.traffic.present:
            attrs.update(_traffic_attrs("libp2p.connection", c))
        if c.latency_ns:
            attrs["libp2p.connection.latency_ms"] = c.latency_ns / 1e6
        span.set_attributes(attrs)
        if c.upgraded_ts:
            span.add_event("libp2p.connection.upgraded", timestamp=c.upgraded_ts * _MS)
        if c.status == pb.ERROR:
            span.set_status(Status(StatusCode.ERROR, "connection ended in ERROR"))
        span.end(end_time=end_ms * _MS)
        self.recent[c.id] = span.get_span_context()
        while len(self.recent) > 1024:
            self.recent.popitem(last=False)
        self._sync_open()

    def _start_stream(self, s: StreamView, conn: ConnView | None, now: int) -> None:
        if s.key in self.streams or s.key in self.pending_streams:
            return
        parent_id = conn.id if conn is not None else b""
        if conn is not None and parent_id in self.pending:
            # Its connection waits for its open_ts; the stream waits with it.
            if not keep(s.key, self.cfg.sample_streams):
                self._count("sampled_out", "stream")
            elif not self._room():
                self._count("dropped", "open_cap")
            else:
                self.pending_streams[s.key] = _PendingStream(s, parent_id, now)
                self._sync_open()
            return
        parent = self.conns.get(parent_id) if conn is not None else None
        if parent is None:
            # No open connection span: the connection was sampled out (so is the stream) or dropped.
            if conn is not None and not keep(conn.id, self.cfg.sample_connections):
                self._count("sampled_out", "stream")
            else:
                self._count("dropped", "open_cap")
            return
        if not keep(s.key, self.cfg.sample_streams):
            self._count("sampled_out", "stream")
            return
        if not self._room():
            self._count("dropped", "open_cap")
            return
        self._open_stream(s, parent, parent_id, (conn.open_ts if conn else 0) or now)

    def _open_stream(self, s: StreamView, parent: Span, parent_id: bytes, fallback_ms: int) -> None:
        from opentelemetry.trace import SpanKind, set_span_in_context

        outbound = s.dir == "outbound"
        attrs: dict[str, Any] = {
            "libp2p.stream.id": s.key[len(parent_id) + 1 :].hex() if parent_id else s.key.hex(),
            "libp2p.connection.id": parent_id.hex(),
            "libp2p.protocol": s.protocol,
            "libp2p.stream.direction": s.dir,
            "libp2p.stream.role": "initiator" if outbound else "responder",
        }
        start = s.open_ts or fallback_ms
        if not s.open_ts:
            attrs["libp2p.start.inferred"] = True
        span = self.tracer.start_span(
            SPAN_STREAM,
            context=set_span_in_context(parent),
            kind=SpanKind.CLIENT if outbound else SpanKind.SERVER,
            attributes=attrs,
            start_time=start * _MS,
        )
        self.streams[s.key] = span
        self._count("started", "stream")

    def _end_stream(self, e: Ended[StreamView], conn: ConnView | None) -> None:
        s = e.view
        span = self.streams.pop(s.key, None)
        if span is None:
            waiting = self.pending_streams.get(s.key)
            if waiting is not None:  # ends once its connection's span exists
                waiting.ended = e
            return
        end_ms = e.end_ms
        if e.inferred and conn is not None and conn.close_ts:
            end_ms = min(end_ms, conn.close_ts)  # a stream cannot outlive its connection
        end_ms = max(end_ms, s.open_ts)
        attrs: dict[str, Any] = {
            "libp2p.stream.status": STATUS_NAMES.get(s.status, str(s.status)),
            "libp2p.end.inferred": e.inferred,
        }
        if s.traffic.present:
            attrs.update(_traffic_attrs("libp2p.stream", s))
        if s.latency_ns:
            attrs["libp2p.stream.latency_ms"] = s.latency_ns / 1e6
        span.set_attributes(attrs)
        if s.status == pb.ERROR:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, "stream ended in ERROR"))
        span.end(end_time=end_ms * _MS)
        self._sync_open()

    # -- events ---------------------------------------------------------------------------
    def on_event(self, event: pb.Event) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        name = event.type.name
        try:
            content = json.loads(event.content) if event.content else {}
        except (ValueError, RecursionError):
            content = None
        if not isinstance(content, dict):
            if name in DHT_QUERY_EVENTS:
                self._count("dropped", "bad_event")
            return
        if name not in DHT_QUERY_EVENTS and not ("queryId" in content and "totalTimeMs" in content):
            return
        total = _num(content.get("totalTimeMs"))
        if total is None or total < 0 or not event.ts:
            self._count("dropped", "bad_event")
            return
        query_id = str(content.get("queryId") or "")
        if not keep(query_id or f"{name}/{event.ts}", self.cfg.sample_dht):
            self._count("sampled_out", "dht_query")
            return
        direction = str(content.get("direction") or ("INBOUND" if name.startswith("Inbound") else "OUTBOUND"))
        outbound = direction.upper() == "OUTBOUND"
        result = str(content.get("result") or "").upper()
        attrs: dict[str, Any] = {
            "libp2p.dht.query.direction": "outbound" if outbound else "inbound",
            "libp2p.dht.query.duration_ms": total,
        }
        for key, attr in (
            ("queryId", "id"),
            ("type", "type"),
            ("trigger", "trigger"),
            ("targetPeerId", "target"),
            ("key", "key"),  # the py-libp2p provider's DHT key when it is not a peer id
        ):
            if content.get(key) not in (None, ""):
                attrs[f"libp2p.dht.query.{attr}"] = str(content[key])
        if result:
            attrs["libp2p.dht.query.result"] = result
        steps = _num(content.get("totalSteps"))
        if steps is not None:
            attrs["libp2p.dht.query.steps"] = int(steps)
        peers_raw = content.get("peerIds")
        if isinstance(peers_raw, list):
            peers = [str(p) for p in peers_raw if isinstance(p, str) and p]
            attrs["libp2p.dht.query.peers.count"] = len(peers)
            if peers:
                attrs["libp2p.dht.query.peers"] = peers[:MAX_PEERS_PER_QUERY]
        end_ns = event.ts * _MS
        span = self.tracer.start_span(
            SPAN_DHT_QUERY,
            kind=SpanKind.CLIENT if outbound else SpanKind.SERVER,
            attributes=attrs,
            start_time=end_ns - round(total * _MS),
        )
        if result == "SUCCESS":
            span.set_status(Status(StatusCode.OK))
        elif result in ("ERROR", "TIMEOUT"):
            span.set_status(Status(StatusCode.ERROR, f"query {result.lower()}"))
        span.end(end_time=end_ns)
        self._count("started", "dht_query")

    # -- the end --------------------------------------------------------------------------
    def close_open(self, reason: str) -> int:
        """End every open span at the last instant seen, marked as still open; returns how many."""
        from exporter.diff import Ended as _Ended

        at_ms = self.last_ms or time.time_ns() // _MS
        last_conns = self.last_snapshot.conns if self.last_snapshot is not None else {}
        last_streams = {s.key: s for c in last_conns.values() for s in c.streams.values()}
        for view, first_seen in list(self.pending.values()):
            self._open_conn(view, first_seen)
        mark: dict[str, Any] = {"libp2p.span.open_at_shutdown": True, "libp2p.end.inferred": True}
        if reason != "shutdown":
            mark["libp2p.span.end_reason"] = reason
        n = 0
        for key, span in list(self.streams.items()):  # children first
            span.set_attributes(mark)
            sv = last_streams.get(key)
            if sv is not None:
                self._end_stream(_Ended(sv, at_ms, True), None)
            else:
                del self.streams[key]
                span.end(end_time=at_ms * _MS)
            n += 1
        for cid, span in list(self.conns.items()):
            span.set_attributes(mark)
            cv = last_conns.get(cid)
            if cv is not None:
                self._end_conn(_Ended(cv, at_ms, True))
            else:
                del self.conns[cid]
                span.end(end_time=at_ms * _MS)
            n += 1
        self.pending_streams.clear()
        self._sync_open()
        return n

    def flush(self, timeout_s: float = 5.0) -> bool:
        return bool(self.provider.force_flush(int(timeout_s * 1000)))

    def shutdown(self) -> None:
        self.provider.shutdown()


def _traffic_attrs(prefix: str, view: ConnView | StreamView) -> dict[str, int]:
    t = view.traffic
    return {
        f"{prefix}.bytes_received": t.bytes_in,
        f"{prefix}.bytes_sent": t.bytes_out,
        f"{prefix}.packets_received": t.packets_in,
        f"{prefix}.packets_sent": t.packets_out,
    }


class OtelSink:
    """The hub listener: one NodeTracer per node, created when the node first needs a span."""

    def __init__(self, cfg: TracingConfig) -> None:
        self.cfg = cfg
        self.tracers: dict[str, NodeTracer] = {}
        self._retired: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def _tracer(self, node: NodeState) -> NodeTracer | None:
        tracer = self.tracers.get(node.name)
        if tracer is None and not self._closed:
            stats = node.accs.get(TracingSubsystem.name)
            if not isinstance(stats, SpanStats):
                stats = node.accs[TracingSubsystem.name] = SpanStats()
            tracer = self.tracers[node.name] = NodeTracer(node, self.cfg, stats)
        return tracer

    def __call__(self, node: NodeState, msg: pb.ServerMessage, update: SnapshotUpdate | None) -> None:
        try:
            with self._lock:
                kind = msg.WhichOneof("payload")
                if kind == "runtime":
                    self._runtime(node, msg.runtime)
                elif kind == "event":
                    tracer = self._tracer(node)
                    if tracer is not None:
                        tracer.on_event(msg.event)
                elif update is not None:
                    tracer = self._tracer(node)
                    if tracer is not None:
                        tracer.on_update(update)
        except Exception:  # tracing must never break ingestion or metrics
            log.exception("node %s: tracing sink failed on a %s message", node.name, msg.WhichOneof("payload"))
            stats = node.accs.get(TracingSubsystem.name)
            if isinstance(stats, SpanStats):
                with stats.lock:
                    stats.dropped["error"] += 1

    def _runtime(self, node: NodeState, runtime: pb.Runtime) -> None:
        """A new peer id is a new node: its old spans end and its resource is replaced."""
        old = self.tracers.get(node.name)
        if old is None or not old.identity or not runtime.peer_id or old.identity == runtime.peer_id:
            return
        log.info("node %s: new peer id; ending its open spans and starting a new trace resource", node.name)
        del self.tracers[node.name]
        self._retire(old, "node_restart")

    def _retire(self, tracer: Any, reason: str) -> None:
        """End a tracer's open spans and flush it in the background; shutdown() waits for it."""
        tracer.close_open(reason)
        t = threading.Thread(target=tracer.shutdown, name=f"otel-retire-{tracer.name}", daemon=True)
        t.start()
        self._retired = [r for r in self._retired if r.is_alive()]  # keep only what is still flushing
        self._retired.append(t)

    def forget(self, name: str) -> None:
        """A node removed from the hub: end its spans and release its provider."""
        with self._lock:
            tracer = self.tracers.pop(name, None)
        if tracer is not None:
            self._retire(tracer, "node_removed")

    def flush(self, timeout_s: float = 5.0) -> bool:
        with self._lock:
            tracers = list(self.tracers.values())
        return all(t.flush(timeout_s) for t in tracers)

    def shutdown(self, timeout_s: float | None = None) -> None:
        """End open spans (marked), flush and close every provider, waiting at most ``timeout_s``."""
        timeout_s = self.cfg.shutdown_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._closed = True
            tracers = list(self.tracers.values())
            self.tracers.clear()
        threads = []
        for tracer in tracers:
            n = tracer.close_open("shutdown")
            if n:
                log.info("node %s: ended %d span(s) still open at shutdown", tracer.name, n)
            t = threading.Thread(target=tracer.shutdown, name=f"otel-shutdown-{tracer.name}", daemon=True)
            t.start()
            threads.append(t)
        deadline = time.monotonic() + timeout_s
        for t in [*threads, *self._retired]:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            log.warning("tracing: spans not flushed within %.1fs at shutdown (collector down or slow?)", timeout_s)


class TracingHandle:
    """What ``install_tracing`` returns; a disabled handle does nothing."""

    def __init__(self, sink: OtelSink | None = None) -> None:
        self.sink = sink

    @property
    def enabled(self) -> bool:
        return self.sink is not None

    def flush(self, timeout_s: float = 5.0) -> bool:
        return self.sink.flush(timeout_s) if self.sink else True

    def shutdown(self, timeout_s: float | None = None) -> None:
        if self.sink is not None:
            self.sink.shutdown(timeout_s)


def install_tracing(
    hub: Hub, args: argparse.Namespace | None = None, cfg: TracingConfig | None = None
) -> TracingHandle:
    """Turn tracing on for ``hub`` when the flags or the environment name an OTLP endpoint.

    Adds the span listener and the ``tracing`` self-metrics subsystem. Call ``shutdown()`` on the
    result when the source stops (it is a no-op when tracing is off).
    """
    if cfg is None:
        cfg = config_from_args(args if args is not None else argparse.Namespace())
    if cfg is None:
        return TracingHandle()
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"libp2p-exporter: tracing needs the OpenTelemetry packages: pip install 'libp2p-exporter[otel]' ({exc})"
        ) from exc
    if not any(isinstance(s, TracingSubsystem) for s in hub.subsystems):
        sub = TracingSubsystem(hub.cardinality)
        hub.subsystems.append(sub)
        for node in list(hub.nodes.values()):
            node.accs.setdefault(sub.name, sub.new_accumulator())
    if not log.isEnabledFor(logging.DEBUG):
        # The SDK logs every failed batch; CountingExporter logs the start and end of an outage instead.
        for name in ("opentelemetry.exporter.otlp", "opentelemetry.sdk._shared_internal"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    sink = OtelSink(cfg)
    hub.listeners.append(sink)
    hub.removal_listeners.append(sink.forget)
    where = cfg.endpoint or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    log.info("tracing on: OTLP %s to %s", cfg.protocol, where)
    return TracingHandle(sink)
