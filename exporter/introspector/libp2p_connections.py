"""The connections and traffic subsystems of the py-libp2p provider: records kept from the
swarm's notifications, reconciled with the swarm and pruned to the retention period on each read.

A mixin of ``Libp2pIntrospection`` (libp2p_provider.py), which owns the state it uses.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import OrderedDict
from typing import Any

from exporter.introspector.api import now_ms
from exporter.introspector.libp2p_traffic import (
    _addr,
    _Bytes,
    _ConnRec,
    _count,
    _is_closed,
    _protocol,
    _StreamRec,
    _tcp_stream,
    _transport_id,
)
from exporter.protocol import introspection_pb2 as pb


class _ConnectionTracking:
    """Connection and stream bookkeeping (trio side); the state is set up by ``Libp2pIntrospection``."""

    host: Any
    count_bytes: bool
    retention_ms: int
    max_closed_conns: int
    max_closed_streams: int
    _ids: itertools.count[int]
    _conns: dict[int, _ConnRec]
    _total: _Bytes
    _upgraded: OrderedDict[int, tuple[Any, int, int]]

    def _publish(self, name: str, content: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- connections and streams (trio side) ------------------------------------------------
    def _conn_opened(self, conn: Any, *, announce: bool) -> _ConnRec:
        rec = self._conns.get(id(conn))
        if rec is not None and rec.conn is conn:
            return rec
        muxed = getattr(conn, "muxed_conn", None)
        peer = str(getattr(muxed, "peer_id", "") or "")
        direction = str(getattr(conn, "direction", "")).lower()
        role = pb.RESPONDER if "inbound" in direction else pb.INITIATOR
        created = getattr(conn, "_created_at", None)
        opened = int(created * 1000) if created else now_ms()
        # Measured only when we saw its security and muxer negotiation; otherwise upgraded_ts stays
        # unset (0) and open_ts is when the swarm took the connection in: never a made-up handshake.
        upgraded = 0
        timing = self._upgraded.pop(id(muxed), None)
        if timing is not None and timing[0] is muxed:
            opened, upgraded = timing[1], timing[2]
        tcp = _tcp_stream(conn)
        local = remote = ""
        if tcp is not None:
            sock = tcp.stream.socket
            with contextlib.suppress(OSError):
                local, remote = _addr(sock.getsockname()), _addr(sock.getpeername())
        if not remote:
            with contextlib.suppress(Exception):
                remote = str(conn.get_transport_addresses()[0])
        security = muxer = ""
        with contextlib.suppress(Exception):
            security = conn.get_negotiated_security_protocol() or ""
        with contextlib.suppress(Exception):
            muxer = conn.get_negotiated_muxer_protocol() or ""
        traffic: _Bytes | None = None
        if self.count_bytes and tcp is not None:
            traffic = _Bytes()

            def count(i: int, o: int, t: _Bytes = traffic) -> None:
                t.bytes_in += i
                t.bytes_out += o
                self._total.bytes_in += i
                self._total.bytes_out += o

            if not _count(tcp, count):
                traffic = None
        rec = _ConnRec(
            id=next(self._ids).to_bytes(8, "big"),
            conn=conn,
            peer_id=peer,
            role=role,
            open_ts=opened,
            upgraded_ts=upgraded,
            local=local,
            remote=remote,
            transport=_transport_id(remote) or "unknown",
            security=security,
            muxer=muxer,
            traffic=traffic,
        )
        self._conns[id(conn)] = rec
        for stream in list(getattr(conn, "streams", ()) or ()):
            self._stream_opened(stream, rec)
        if announce:
            self._publish(
                "PeerConnecting",
                {
                    "peerId": peer,
                    "transport": rec.transport,
                    "role": "INITIATOR" if role == pb.INITIATOR else "RESPONDER",
                },
            )
        return rec

    def _conn_closed(self, conn: Any) -> None:
        rec = self._conns.get(id(conn))
        if rec is None or rec.conn is not conn or rec.close_ts:
            return
        now = now_ms()
        rec.close_ts = now
        for s in rec.streams.values():
            if not s.close_ts:
                s.close_ts = now
                s.protocol = s.protocol or _protocol(s.stream)
        self._publish(
            "PeerDisconnecting",
            {"peerId": rec.peer_id, "transport": rec.transport, "openTime": rec.open_ts, "age": now - rec.open_ts},
        )

    def _stream_opened(self, stream: Any, rec: _ConnRec | None = None) -> None:
        conn = getattr(stream, "swarm_conn", None)
        if rec is None:
            if conn is None:
                return
            rec = self._conns.get(id(conn))
            if rec is None or rec.conn is not conn:
                rec = self._conn_opened(conn, announce=False)
        if id(stream) in rec.streams and rec.streams[id(stream)].stream is stream:
            return
        muxed = getattr(stream, "muxed_stream", None)
        role = pb.INITIATOR if getattr(muxed, "is_initiator", False) else pb.RESPONDER
        srec = _StreamRec(id=next(self._ids).to_bytes(8, "big"), stream=stream, role=role, open_ts=now_ms())
        if self.count_bytes:

            def count(i: int, o: int, t: _Bytes = srec.traffic) -> None:
                t.bytes_in += i
                t.bytes_out += o

            _count(stream, count)
        rec.streams[id(stream)] = srec

    def _stream_closed(self, stream: Any) -> None:
        conn = getattr(stream, "swarm_conn", None)
        rec = self._conns.get(id(conn)) if conn is not None else None
        srec = rec.streams.get(id(stream)) if rec is not None else None
        if srec is None or srec.stream is not stream or srec.close_ts:
            return
        srec.close_ts = now_ms()
        srec.protocol = srec.protocol or _protocol(stream)

    def _reconcile(self) -> None:
        """Catch what notifications missed: new swarm connections, and closed ones never announced."""
        network = self.host.get_network()
        live: set[int] = set()
        for conns in list(network.connections.values()):
            for conn in list(conns):
                live.add(id(conn))
                self._conn_opened(conn, announce=False)
        for key, rec in list(self._conns.items()):
            if not rec.close_ts and key not in live and _is_closed(rec.conn):
                self._conn_closed(rec.conn)

    def _prune(self, now: int) -> None:
        """Forget what closed before the retention period, and bound what closed within it."""
        horizon = now - self.retention_ms
        closed_conns = []
        for key, rec in list(self._conns.items()):
            if rec.close_ts and rec.close_ts < horizon:
                del self._conns[key]
                continue
            if rec.close_ts:
                closed_conns.append((rec.close_ts, key))
            closed_streams = []
            for skey, s in list(rec.streams.items()):
                if s.close_ts and s.close_ts < horizon:
                    del rec.streams[skey]
                elif s.close_ts:
                    closed_streams.append((s.close_ts, skey))
            for _, skey in sorted(closed_streams)[: max(0, len(closed_streams) - self.max_closed_streams)]:
                del rec.streams[skey]
        for _, key in sorted(closed_conns)[: max(0, len(closed_conns) - self.max_closed_conns)]:
            del self._conns[key]

    def snapshot_connections(self) -> list[pb.Connection]:
        """Every connection we know, open ones and those closed within the retention period."""
        self._reconcile()
        now = now_ms()
        self._prune(now)
        mono = time.monotonic()
        out = []
        for rec in self._conns.values():
            c = pb.Connection(id=rec.id, peer_id=rec.peer_id, role=rec.role, transport_id=rec.transport.encode())
            c.status = pb.CLOSED if rec.close_ts else pb.ACTIVE
            c.endpoints.src_multiaddr = rec.local
            c.endpoints.dst_multiaddr = rec.remote
            c.timeline.open_ts = rec.open_ts
            c.timeline.upgraded_ts = rec.upgraded_ts
            c.timeline.close_ts = rec.close_ts
            c.attribs.multiplexer = rec.muxer
            c.attribs.encryption = rec.security
            if rec.traffic is not None:
                rec.traffic.fill(c.traffic, mono)
            rtt = getattr(getattr(rec.conn, "muxed_conn", None), "_rtt", 0.0)
            if not rec.close_ts and isinstance(rtt, float) and rtt > 0:
                c.latency_ns = int(rtt * 1e9)
            c.streams.SetInParent()  # present even before the first stream and once closed (docs/protocol.md §5)
            for s in rec.streams.values():
                ps = c.streams.streams.add(id=s.id, role=s.role)
                ps.protocol = s.protocol or _protocol(s.stream)
                ps.timeline.open_ts = s.open_ts
                ps.timeline.close_ts = s.close_ts
                ps.status = pb.CLOSED if s.close_ts else pb.ACTIVE
                if self.count_bytes:
                    s.traffic.fill(ps.traffic, mono)
            out.append(c)
        return out

    def snapshot_traffic(self) -> pb.Traffic:
        traffic = pb.Traffic()
        if self.count_bytes:
            self._total.fill(traffic, time.monotonic())
        return traffic
