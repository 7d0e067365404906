"""The span model: each connection's life, its streams, and each DHT query, from snapshot diffs.

Metrics say how many; spans say which one and when. Spans get explicit start and end times taken
from the node's own timestamps, so a span shows when a connection really opened, not when the
exporter noticed. One ``NodeTracer`` per observed node holds the spans open between snapshots.

Policy at shutdown: spans still open are *ended* at the node's last snapshot instant, marked
``libp2p.span.open_at_shutdown=true`` and ``libp2p.end.inferred=true``, and flushed (bounded wait).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from exporter import __version__
from exporter.model.multiaddr import Addr, parse
from exporter.model.snapshot import STATUS_NAMES, ConnView, Snapshot, StreamView
from exporter.pipeline.diff import Ended
from exporter.pipeline.events import EventView
from exporter.pipeline.node import NodeState, SnapshotUpdate
from exporter.pipeline.throttle import SpanShare
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.otel.config import TracingConfig
from exporter.sinks.otel.export import Channel, SpanQueue, resource_for
from exporter.sinks.otel.metrics import SpanStats
from exporter.sinks.otel.otlp import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_OK, Span

log = logging.getLogger(__name__)

SPAN_CONNECTION = "libp2p.connection"
SPAN_STREAM = "libp2p.stream"
SPAN_DHT_QUERY = "libp2p.dht.query"
MAX_PEERS_PER_QUERY = 64  # peer ids listed on one DHT query span
_MS = 1_000_000  # ns per ms


def keep(key: bytes | str, ratio: float) -> bool:
    """Deterministic sampling by id: the same connection is always in or always out."""
    if ratio >= 1.0:
        return True
    if ratio <= 0.0:
        return False
    raw = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") < ratio * 2.0**64


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


def _addr_attrs(prefix: str, addr: Addr) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if addr.host:
        attrs[f"{prefix}.address"] = addr.host
    if addr.port is not None:
        attrs[f"{prefix}.port"] = addr.port
    return attrs


@dataclass
class _PendingStream:
    view: StreamView
    conn_id: bytes
    first_seen: int
    ended: Ended[StreamView] | None = None


class NodeTracer:
    """One node's spans held open between snapshots; ended ones go to the shared export queue."""

    def __init__(
        self,
        node: NodeState,
        cfg: TracingConfig,
        stats: SpanStats,
        queue: SpanQueue,
        share: SpanShare | None = None,
    ) -> None:
        self.cfg = cfg
        self.share = share or SpanShare()  # lowered by the ingest governor when the exporter is behind
        self.stats = stats
        self.name = node.name
        self.identity = node.runtime.peer_id if node.runtime else ""
        self.queue = queue
        resource = resource_for(resource_attributes(node, cfg), "libp2p-exporter", __version__)
        self.channel = Channel(node.name, resource, stats, node.spans)
        self.conns: dict[bytes, Span] = {}
        self.pending: dict[bytes, tuple[ConnView, int]] = {}  # dialling, open_ts unknown: (view, first seen)
        self.pending_streams: dict[bytes, _PendingStream] = {}  # streams of those connections
        self.streams: dict[bytes, Span] = {}
        self.recent: OrderedDict[bytes, tuple[int, int]] = OrderedDict()  # ended connections' (trace, span) ids
        self.last_ms = 0
        self.last_snapshot: Snapshot | None = None
        self._warned_cap = False
        self.exported = node.spans  # told of each ended span, so an export can make it an exemplar

    def _ending(self, span: Span, kind: str, key: object) -> None:
        """Before ``span.end()``: the export may run (on its own thread) as soon as the span ends."""
        if self.exported is not None:
            self.exported.ended(span.span_id, kind, key)

    def _queue(self, span: Span) -> None:
        self.queue.put(self.channel, span)

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
                    ended_conns.append(Ended(c, c.close_ts or now, c.close_ts == 0))
        for s in diff.opened_streams:
            self._start_stream(s, diff.stream_conn.get(s.key), now)
        if diff.first:
            seen_s = {s.key for s in diff.opened_streams}
            for c in cur.conns.values():
                for s in c.streams.values():
                    if s.key not in seen_s and (s.closed or c.closed):
                        self._start_stream(s, c, now)
                        end = s.close_ts or c.close_ts or now
                        ended_streams.append(Ended(s, end, s.close_ts == 0))
        for e in ended_streams:
            self._end_stream(e, diff.stream_conn.get(e.view.key))
        for ec in ended_conns:
            self._end_conn(ec)

    def _start_conn(self, c: ConnView, now: int) -> None:
        if c.id in self.conns or c.id in self.pending:
            return
        if not keep(c.id, self.cfg.sample_connections * self.share.value):
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
        links: list[tuple[int, int, dict[str, Any]]] = []
        if c.relayed_over:
            attrs["libp2p.connection.relayed_over"] = c.relayed_over.hex()
            relay = self.conns.get(c.relayed_over)
            ids = (relay.trace_id, relay.span_id) if relay is not None else self.recent.get(c.relayed_over)
            if ids is not None:
                links.append((ids[0], ids[1], {"libp2p.link.type": "relayed_over"}))
        start = c.open_ts or now
        if not c.open_ts:
            attrs["libp2p.start.inferred"] = True
        span = Span(
            SPAN_CONNECTION, KIND_CLIENT if outbound else KIND_SERVER, start * _MS, attrs, self._queue, links=links
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
            span.add_event("libp2p.connection.upgraded", c.upgraded_ts * _MS)
        if c.status == pb.ERROR:
            span.set_status(STATUS_ERROR, "connection ended in ERROR")
        self._ending(span, "connection", c.id)
        span.end(end_ms * _MS)
        self.recent[c.id] = (span.trace_id, span.span_id)
        while len(self.recent) > 1024:
            self.recent.popitem(last=False)
        self._sync_open()

    def _start_stream(self, s: StreamView, conn: ConnView | None, now: int) -> None:
        if s.key in self.streams or s.key in self.pending_streams:
            return
        parent_id = conn.id if conn is not None else b""
        if conn is not None and parent_id in self.pending:
            # Its connection waits for its open_ts; the stream waits with it.
            if not keep(s.key, self.cfg.sample_streams * self.share.value):
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
            if conn is not None and not keep(conn.id, self.cfg.sample_connections * self.share.value):
                self._count("sampled_out", "stream")
            else:
                self._count("dropped", "open_cap")
            return
        if not keep(s.key, self.cfg.sample_streams * self.share.value):
            self._count("sampled_out", "stream")
            return
        if not self._room():
            self._count("dropped", "open_cap")
            return
        self._open_stream(s, parent, parent_id, (conn.open_ts if conn else 0) or now)

    def _open_stream(self, s: StreamView, parent: Span, parent_id: bytes, fallback_ms: int) -> None:
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
        span = parent.child(SPAN_STREAM, KIND_CLIENT if outbound else KIND_SERVER, start * _MS, attrs)
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
            span.set_status(STATUS_ERROR, "stream ended in ERROR")
        self._ending(span, "stream", s.key)
        span.end(end_ms * _MS)
        self._sync_open()

    # -- events ---------------------------------------------------------------------------
    def on_event(self, event: EventView) -> None:
        query = event.dht_query
        if query is None:
            if event.named_dht_query:  # a query event whose content is not a JSON object
                self._count("dropped", "bad_event")
            return
        if query.total_ms is None or not event.ts_ms:
            self._count("dropped", "bad_event")
            return
        if not keep(query.query_id or f"{event.type}/{event.ts_ms}", self.cfg.sample_dht * self.share.value):
            self._count("sampled_out", "dht_query")
            return
        outbound = query.direction == "outbound"
        result = query.result.upper()
        attrs: dict[str, Any] = {
            "libp2p.dht.query.direction": query.direction,
            "libp2p.dht.query.duration_ms": query.total_ms,
        }
        for attr, value in (
            ("id", query.query_id),
            ("type", query.kind),
            ("trigger", query.trigger),
            ("target", query.target),
            ("key", query.key),  # the py-libp2p provider's DHT key when it is not a peer id
        ):
            if value:
                attrs[f"libp2p.dht.query.{attr}"] = value
        if result:
            attrs["libp2p.dht.query.result"] = result
        if query.steps is not None:
            attrs["libp2p.dht.query.steps"] = query.steps
        if query.peers is not None:
            attrs["libp2p.dht.query.peers.count"] = len(query.peers)
            if query.peers:
                attrs["libp2p.dht.query.peers"] = list(query.peers[:MAX_PEERS_PER_QUERY])
        end_ns = event.ts_ms * _MS
        kind = KIND_CLIENT if outbound else KIND_SERVER
        span = Span(SPAN_DHT_QUERY, kind, end_ns - round(query.total_ms * _MS), attrs, self._queue)
        if result == "SUCCESS":
            span.set_status(STATUS_OK)
        elif result in ("ERROR", "TIMEOUT"):
            span.set_status(STATUS_ERROR, f"query {result.lower()}")
        self._ending(span, "dht_query", query.query_id or f"{event.type}/{event.ts_ms}")
        span.end(end_ns)
        self._count("started", "dht_query")

    # -- the end --------------------------------------------------------------------------
    def close_open(self, reason: str) -> int:
        """End every open span at the last instant seen, marked as still open; returns how many."""
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
                self._end_stream(Ended(sv, at_ms, True), None)
            else:
                del self.streams[key]
                span.end(at_ms * _MS)
            n += 1
        for cid, span in list(self.conns.items()):
            span.set_attributes(mark)
            cv = last_conns.get(cid)
            if cv is not None:
                self._end_conn(Ended(cv, at_ms, True))
            else:
                del self.conns[cid]
                span.end(at_ms * _MS)
            n += 1
        self.pending_streams.clear()
        self._sync_open()
        return n


def _traffic_attrs(prefix: str, view: ConnView | StreamView) -> dict[str, int]:
    t = view.traffic
    attrs = {}
    if t.has_in:  # an unset direction (all-zero DataGauge) was not measured: no attribute
        attrs[f"{prefix}.bytes_received"] = t.bytes_in
        attrs[f"{prefix}.packets_received"] = t.packets_in
    if t.has_out:
        attrs[f"{prefix}.bytes_sent"] = t.bytes_out
        attrs[f"{prefix}.packets_sent"] = t.packets_out
    return attrs
