"""Data providers for a running py-libp2p host (PyPI ``libp2p``; extra ``libp2p-exporter[libp2p]``).

``Libp2pIntrospection(host, dht=...)`` watches one host from the trio side and registers, on an
``Introspector``, providers for all five subsystems:

- connections, from the swarm plus notifee hooks: direction, remote and local multiaddrs,
  security and muxer, yamux RTT, and the handshake: ``open_ts`` when the raw connection entered
  security negotiation and ``upgraded_ts`` when the muxer was ready, timed by wrapping the swarm's
  upgrader on the instance (unset when not seen); streams inlined with protocol, direction, open
  and close times, and the ``streams`` field present even when empty. Closed connections and streams stay in the State (status CLOSED, ``close_ts``) for
  ``retention_ms``, then vanish, as protocol.md §5 describes.
- traffic: py-libp2p does not count bytes, so we count them ourselves, contained to objects we
  own the knowledge of: when a connection is announced, the read/write methods of *that
  connection's* TCP stream object (``TrioTCPStream``) are wrapped on the instance (never the class)
  to add up bytes; the same is done per stream on ``NetStream`` for per-stream (so per-protocol)
  traffic. Handshake bytes sent before the connection is announced are not counted, nor are
  transports other than TCP (their connections carry no traffic field: proto3 unset).
  ``cum_packets`` is left unset: py-libp2p gives no packet boundaries.
- dht: routing-table buckets regrouped by common prefix length with our id (as go-libp2p reports
  them), each peer ACTIVE when connected and MISSING otherwise, its age since we first saw it;
  query counters by result from wrappers around the DHT's query calls (outbound: find_peer,
  get_value, put_value, provide, find_providers, refresh_routing_table; inbound: the Kademlia
  stream handler).
- events: ``PeerConnecting`` / ``PeerDisconnecting`` from the notifee, ``OutboundDHTQuery`` /
  ``InboundDHTQuery`` from the wrappers, with the observer UI's JSON keys; ``targetPeerId`` only
  when the query's key is a peer id, any other key under ``key``.

All libp2p objects are touched only on the trio thread: the providers hand a synchronous reader to
``TrioBridge.run`` (see bridge.py for the thread design).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import platform
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import wraps
from importlib import metadata
from typing import Any

import trio

from exporter.introspector.api import Introspector, event_type, now_ms
from exporter.introspector.bridge import AsyncioThread, TrioBridge
from exporter.introspector.endpoint import Endpoint
from exporter.introspector.peerstore_provider import PeerstoreSampler, record_agents
from exporter.protocol import introspection_pb2 as pb

try:  # the extra is optional; importing this module without it explains what to install
    from libp2p.abc import INotifee
    from libp2p.kad_dht import common as kad_common
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the py-libp2p provider needs the extra: pip install 'libp2p-exporter[libp2p]'") from exc

log = logging.getLogger(__name__)
Prop = pb.EventType.EventProperty
DEFAULT_RETENTION_MS = 120_000
# A busy node closes many streams within a retention period: keep the newest closed ones only.
MAX_CLOSED_CONNS = 1024
MAX_CLOSED_STREAMS_PER_CONN = 256
_INBOUND_PEEK = 8192  # bytes of an inbound DHT stream kept to learn the request type
_MAX_PENDING_HANDSHAKES = 256
_MAX_KEY_CHARS = 256  # a DHT key in an event; the remote peer chooses it

EVENT_TYPES = [
    event_type("PeerConnecting", {"peerId": Prop.PEERID, "transport": Prop.STRING, "role": Prop.STRING}),
    event_type(
        "PeerDisconnecting",
        {"peerId": Prop.PEERID, "transport": Prop.STRING, "openTime": Prop.TIME, "age": Prop.NUMBER},
    ),
    *(
        event_type(
            name,
            {
                "direction": Prop.STRING,
                "peerIds": (Prop.PEERID, True),
                "queryId": Prop.STRING,
                "targetPeerId": Prop.PEERID,  # only when the query's key is a peer id
                "key": Prop.STRING,  # the key when it is not a peer id (a record name, a content hash)
                "totalTimeMs": Prop.NUMBER,
                "totalSteps": Prop.NUMBER,
                "trigger": Prop.STRING,
                "type": Prop.STRING,
                "result": Prop.STRING,
            },
        )
        for name in ("InboundDHTQuery", "OutboundDHTQuery")
    ),
]
# Kademlia request type -> the observer's query type (PEER and PING extend its CONTENT/PROVIDER/VALUE).
_KAD_TYPES = {0: "VALUE", 1: "VALUE", 2: "PROVIDER", 3: "PROVIDER", 4: "PEER", 5: "PING"}
_OUTBOUND_CALLS = {
    "find_peer": ("PEER", "API"),
    "get_value": ("VALUE", "API"),
    "put_value": ("VALUE", "API"),
    "provide": ("PROVIDER", "API"),
    "find_providers": ("PROVIDER", "API"),
    "refresh_routing_table": ("PEER", "DISCOVERY"),
}


@dataclass
class _Bytes:
    """Cumulative bytes in and out, plus the rate over the last second or more."""

    bytes_in: int = 0
    bytes_out: int = 0
    _mark: tuple[float, int, int] = (0.0, 0, 0)
    _bw: tuple[int, int] = (0, 0)

    def rate(self, now: float) -> tuple[int, int]:
        t, i, o = self._mark
        if not t:
            self._mark = (now, self.bytes_in, self.bytes_out)
        elif now - t >= 1.0:
            self._bw = (int((self.bytes_in - i) / (now - t)), int((self.bytes_out - o) / (now - t)))
            self._mark = (now, self.bytes_in, self.bytes_out)
        return self._bw

    def fill(self, traffic: pb.Traffic, now: float) -> None:
        bw_in, bw_out = self.rate(now)
        traffic.traffic_in.cum_bytes = self.bytes_in
        traffic.traffic_in.inst_bw = bw_in
        traffic.traffic_out.cum_bytes = self.bytes_out
        traffic.traffic_out.inst_bw = bw_out


@dataclass
class _StreamRec:
    id: bytes
    stream: Any
    role: int
    open_ts: int
    protocol: str = ""
    close_ts: int = 0
    traffic: _Bytes = field(default_factory=_Bytes)


@dataclass
class _ConnRec:
    id: bytes
    conn: Any
    peer_id: str
    role: int
    open_ts: int
    upgraded_ts: int
    local: str
    remote: str
    transport: str
    security: str
    muxer: str
    traffic: _Bytes | None
    close_ts: int = 0
    streams: dict[int, _StreamRec] = field(default_factory=dict)  # id(stream) -> record, open and closed


def _chain(conn: Any) -> Iterable[Any]:
    """The objects under a SwarmConn down to the socket: muxer, secure session, ..., TCP stream."""
    obj = getattr(conn, "muxed_conn", None)
    seen = 0
    while obj is not None and seen < 8:
        yield obj
        seen += 1
        nxt = None
        for attr in ("secured_conn", "read_writer", "read_write_closer", "conn", "stream"):
            cand = getattr(obj, attr, None)
            if cand is not None and cand is not obj:
                nxt = cand
                break
        obj = nxt


def _tcp_stream(conn: Any) -> Any:
    """The wrapper whose ``stream`` is the trio SocketStream (py-libp2p's TrioTCPStream), if any."""
    for obj in _chain(conn):
        if isinstance(getattr(obj, "stream", None), trio.SocketStream):
            return obj
    return None


def _addr(sockaddr: Any) -> str:
    try:
        host, port = sockaddr[0], sockaddr[1]
    except (TypeError, IndexError):
        return ""
    return f"/ip6/{host}/tcp/{port}" if ":" in str(host) else f"/ip4/{host}/tcp/{port}"


def _transport_id(multiaddr: str) -> str:
    """``/ip4/1.2.3.4/tcp/4001`` -> ``ip4+tcp``, the text the Go server put in transport_id."""
    parts = [p for p in multiaddr.split("/") if p]
    names = parts[0::2] if parts else []
    return "+".join(n for n in names if n not in ("p2p", "ipfs"))


def _cpl(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) * 8 - x.bit_length()


def _count(obj: Any, counter: Callable[[int, int], None]) -> bool:
    """Wrap ``obj.read``/``obj.write`` on this instance so they report bytes to ``counter(in, out)``."""
    read, write = getattr(obj, "read", None), getattr(obj, "write", None)
    if read is None or write is None or getattr(obj, "_introspection_counted", False):
        return False

    async def counted_read(*args: Any, **kwargs: Any) -> bytes:
        data = await read(*args, **kwargs)
        if data:
            counter(len(data), 0)
        return data

    async def counted_write(data: bytes, *args: Any, **kwargs: Any) -> Any:
        result = await write(data, *args, **kwargs)
        counter(0, len(data))
        return result

    obj.read = counted_read
    obj.write = counted_write
    obj._introspection_counted = True
    return True


class _Notifee(INotifee):
    """Forwards swarm notifications to the introspection (runs on trio)."""

    def __init__(self, owner: Libp2pIntrospection) -> None:
        self.owner = owner

    async def opened_stream(self, network: Any, stream: Any) -> None:
        self.owner._stream_opened(stream)

    async def closed_stream(self, network: Any, stream: Any) -> None:
        self.owner._stream_closed(stream)

    async def connected(self, network: Any, conn: Any) -> None:
        self.owner._conn_opened(conn, announce=True)

    async def disconnected(self, network: Any, conn: Any) -> None:
        self.owner._conn_closed(conn)

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None


class Libp2pIntrospection:
    """Makes one py-libp2p host (and optionally its KadDHT) introspectable.

    Create and ``attach()`` it on the trio thread; ``register(introspector, bridge)`` may be called
    from anywhere. ``snapshot_*`` methods must run on the trio thread (the providers make sure of it).
    """

    def __init__(
        self, host: Any, *, dht: Any = None, retention_ms: int = DEFAULT_RETENTION_MS, count_bytes: bool = True
    ) -> None:
        self.host = host
        self.dht = dht
        self.retention_ms = retention_ms
        self.count_bytes = count_bytes
        self.max_closed_conns = MAX_CLOSED_CONNS
        self.max_closed_streams = MAX_CLOSED_STREAMS_PER_CONN
        self.peer_id = str(host.get_id())
        self._key = hashlib.sha256(host.get_id().to_bytes()).digest()
        self._ids = itertools.count(1)
        self._conns: dict[int, _ConnRec] = {}  # id(SwarmConn) -> record
        self._total = _Bytes()
        self._dht_seen: dict[str, int] = {}  # peer id -> ms first seen in the routing table
        self._queries = {"in": [0, 0, 0], "out": [0, 0, 0]}  # success, error, timeout
        self._query_ids = itertools.count(1)
        self._introspector: Introspector | None = None
        self._notifee = _Notifee(self)
        self._wrapped: list[tuple[Any, str, Any]] = []
        # Handshake times measured around the swarm's upgrader, until the connection is announced:
        # id(secured conn) -> (conn, start ms); id(muxed conn) -> (conn, start ms, end ms). Bounded:
        # a handshake that fails leaves an entry behind, dropped oldest first.
        self._securing: OrderedDict[int, tuple[Any, int]] = OrderedDict()
        self._upgraded: OrderedDict[int, tuple[Any, int, int]] = OrderedDict()
        self.start_ts = now_ms()
        self.attached = False

    # -- setup ------------------------------------------------------------------------------
    def attach(self) -> None:
        """Hook into the host (notifee, DHT wrappers) and take in connections that already exist."""
        if self.attached:
            return
        network = self.host.get_network()
        network.register_notifee(self._notifee)
        for conns in list(network.connections.values()):
            for conn in list(conns):
                self._conn_opened(conn, announce=False)
        self._instrument_upgrader(network)
        if self.dht is not None:
            self._instrument_dht()
        record_agents()  # identify keeps agent versions from now on, for the peerstore extension
        self.attached = True

    def detach(self) -> None:
        if not self.attached:
            return
        network = self.host.get_network()
        if self._notifee in getattr(network, "notifees", []):
            network.notifees.remove(self._notifee)
        for obj, attr, original in reversed(self._wrapped):
            if original is None:
                obj.__dict__.pop(attr, None)
            else:
                setattr(obj, attr, original)
        self._wrapped.clear()
        self.attached = False

    def register(self, introspector: Introspector, bridge: TrioBridge) -> None:
        """Register this host's providers for every subsystem on ``introspector``."""
        self._introspector = introspector

        def on_trio(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
            async def call() -> Any:
                return await bridge.run(fn)

            return call

        runtime = pb.Runtime(
            implementation="py-libp2p",
            version=_version("libp2p"),
            platform=f"{platform.python_implementation()} {platform.python_version()} {sys.platform}",
            peer_id=self.peer_id,
        )
        introspector.register("runtime", lambda: runtime, name="py-libp2p")
        introspector.register("events", lambda: EVENT_TYPES, name="py-libp2p")
        introspector.register("connections", on_trio(self.snapshot_connections), name="py-libp2p")
        introspector.register("traffic", on_trio(self.snapshot_traffic), name="py-libp2p")
        if self.dht is not None:
            introspector.register("dht", on_trio(self.snapshot_dht), name="py-libp2p-kad")
        # The peerstore extension (exporter/introspector/peerstore_provider.py).
        introspector.register("peerstore", on_trio(PeerstoreSampler(self.host.get_peerstore())), name="py-libp2p")

    def _publish(self, name: str, content: dict[str, Any]) -> None:
        if self._introspector is not None:
            self._introspector.publish(name, content)

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
            c.streams.SetInParent()  # present even before the first stream and once closed (protocol.md §5)
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

    # -- DHT ---------------------------------------------------------------------------------
    def snapshot_dht(self) -> pb.DHT:
        dht = self.dht
        table = dht.routing_table
        now = now_ms()
        out = pb.DHT(protocol=str(getattr(dht, "protocol_prefix", "/ipfs")) + "/kad/1.0.0", enabled=True)
        out.start_ts = self.start_ts
        first_bucket = table.buckets[0] if table.buckets else None
        out.params.k = int(getattr(first_bucket, "bucket_size", kad_common.BUCKET_SIZE))
        out.params.alpha = kad_common.ALPHA
        out.params.beta = kad_common.BETA
        connected = self.host.get_network().connections
        by_cpl: dict[int, list[pb.DHT.PeerInDHT]] = {}
        present: set[str] = set()
        for bucket in list(table.buckets):
            for peer_id in list(bucket.peers.keys()):
                pid = str(peer_id)
                present.add(pid)
                since = self._dht_seen.setdefault(pid, now)
                cpl = _cpl(self._key, hashlib.sha256(peer_id.to_bytes()).digest())
                status = pb.DHT.PeerInDHT.ACTIVE if connected.get(peer_id) else pb.DHT.PeerInDHT.MISSING
                by_cpl.setdefault(cpl, []).append(
                    pb.DHT.PeerInDHT(peer_id=pid, status=status, age_in_bucket=min(now - since, 2**32 - 1))
                )
        for gone in set(self._dht_seen) - present:
            del self._dht_seen[gone]
        for cpl in sorted(by_cpl):
            out.buckets.add(cpl=cpl).peers.extend(by_cpl[cpl])
        for direction, gauge in (("in", out.incoming_queries), ("out", out.outgoing_queries)):
            gauge.success, gauge.error, gauge.timeout = self._queries[direction]
        return out

    def routing_table_size(self) -> int:
        return int(self.dht.get_routing_table_size()) if self.dht is not None else 0

    def _record_query(self, direction: str, result: str, content: dict[str, Any]) -> None:
        self._queries[direction][("SUCCESS", "ERROR", "TIMEOUT").index(result)] += 1
        content.update(
            direction="INBOUND" if direction == "in" else "OUTBOUND",
            queryId=f"{self.peer_id[-8:]}-{next(self._query_ids)}",
            result=result,
        )
        self._publish("InboundDHTQuery" if direction == "in" else "OutboundDHTQuery", content)

    # -- handshake timing -------------------------------------------------------------------
    def _instrument_upgrader(self, network: Any) -> None:
        """Time each connection's upgrade: from the raw connection entering security negotiation
        (open_ts, "opened on the wire") to the muxer being ready (upgraded_ts)."""
        upgrader = getattr(network, "upgrader", None)
        security = getattr(upgrader, "upgrade_security", None)
        muxing = getattr(upgrader, "upgrade_connection", None)
        if security is None or muxing is None:
            return
        securing, upgraded = self._securing, self._upgraded

        def remember(table: OrderedDict[int, Any], obj: Any, value: tuple[Any, ...]) -> None:
            table[id(obj)] = (obj, *value)
            while len(table) > _MAX_PENDING_HANDSHAKES:
                table.popitem(last=False)

        @wraps(security)
        async def timed_security(raw_conn: Any, *args: Any, **kwargs: Any) -> Any:
            start = now_ms()
            secured = await security(raw_conn, *args, **kwargs)
            remember(securing, secured, (start,))
            return secured

        @wraps(muxing)
        async def timed_muxing(secured: Any, *args: Any, **kwargs: Any) -> Any:
            muxed = await muxing(secured, *args, **kwargs)
            began = securing.pop(id(secured), None)
            if began is not None and began[0] is secured:
                remember(upgraded, muxed, (began[1], now_ms()))
            return muxed

        for attr, wrapper in (("upgrade_security", timed_security), ("upgrade_connection", timed_muxing)):
            self._wrapped.append((upgrader, attr, upgrader.__dict__.get(attr)))
            setattr(upgrader, attr, wrapper)

    def _instrument_dht(self) -> None:
        dht = self.dht
        for name, (qtype, trigger) in _OUTBOUND_CALLS.items():
            original = getattr(dht, name, None)
            if original is None:
                continue
            self._wrapped.append((dht, name, dht.__dict__.get(name)))
            setattr(dht, name, self._outbound(original, qtype, trigger))
        proto = getattr(kad_common, "PROTOCOL_ID", "/ipfs/kad/1.0.0")
        mode = str(getattr(getattr(dht, "mode", None), "name", getattr(dht, "mode", ""))).upper()
        if "SERVER" in mode and hasattr(dht, "handle_stream"):
            self.host.set_stream_handler(proto, self._inbound(dht.handle_stream))

    def _outbound(self, call: Callable[..., Awaitable[Any]], qtype: str, trigger: str) -> Callable[..., Awaitable[Any]]:
        """A wrapper that times one DHT query and counts it by result (None/False = not found = ERROR)."""

        @wraps(call)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.monotonic()
            target = args[0] if args else kwargs.get("peer_id", kwargs.get("key", ""))
            result = "ERROR"
            try:
                value = await call(*args, **kwargs)
                result = "ERROR" if value is None or value is False else "SUCCESS"
                if call.__name__ in ("put_value", "refresh_routing_table"):
                    result = "SUCCESS"  # these return None on success
                return value
            except (trio.TooSlowError, TimeoutError):
                result = "TIMEOUT"
                raise
            finally:
                # A cancelled query (shutdown) is not a result; everything else is counted once.
                if not _being_cancelled():
                    self._record_query(
                        "out",
                        result,
                        {
                            "peerIds": [],
                            "targetPeerId": str(target) if qtype == "PEER" else "",
                            "key": "" if qtype == "PEER" else _key_text(target),
                            "totalTimeMs": int((time.monotonic() - t0) * 1000),
                            "totalSteps": 0,
                            "trigger": trigger,
                            "type": qtype,
                        },
                    )

        return wrapper

    def _inbound(self, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """Wraps the Kademlia stream handler: one inbound query per stream, typed from its first message."""

        async def wrapper(stream: Any) -> None:
            t0 = time.monotonic()
            peeked = bytearray()
            read = stream.read

            async def peeking_read(*args: Any, **kwargs: Any) -> bytes:
                data = await read(*args, **kwargs)
                if len(peeked) < _INBOUND_PEEK:
                    peeked.extend(data[: _INBOUND_PEEK - len(peeked)])
                return data

            stream.read = peeking_read
            result = "ERROR"
            try:
                await handler(stream)
                result = "SUCCESS"
            except (trio.TooSlowError, TimeoutError):
                result = "TIMEOUT"
                raise
            finally:
                if not _being_cancelled():
                    remote = ""
                    with contextlib.suppress(Exception):
                        remote = str(stream.muxed_conn.peer_id)
                    qtype, target, key = _kad_request(bytes(peeked))
                    self._record_query(
                        "in",
                        result,
                        {
                            "peerIds": [remote] if remote else [],
                            "targetPeerId": target,
                            "key": key,
                            "totalTimeMs": int((time.monotonic() - t0) * 1000),
                            "totalSteps": 1,
                            "trigger": "API",
                            "type": qtype,
                        },
                    )

        return wrapper


def _peer_id_text(key: bytes) -> str:
    """The peer id ``key`` is, in base58, when it decodes as a peer id's multihash; else ''.

    A peer id is an identity multihash (code 0x00, the key inline, at most 42 bytes) or a sha2-256
    one (code 0x12, 32 bytes). Anything else (a record name such as ``/pk/...`` or ``demo-1``) is not.
    """
    identity = len(key) >= 3 and key[0] == 0x00 and key[1] == len(key) - 2 <= 42
    sha256 = len(key) == 34 and key[0] == 0x12 and key[1] == 0x20
    if not (identity or sha256):
        return ""
    from libp2p.peer.id import ID

    return str(ID(key))


def _key_text(key: Any) -> str:
    """A DHT key for an event: printable text as it is, other bytes (a content hash) in base58; capped."""
    if isinstance(key, str):
        text = key
    elif isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
        if raw and all(32 <= b < 127 for b in raw):
            text = raw.decode("ascii")
        else:
            import base58

            text = base58.b58encode(raw).decode("ascii") if raw else ""
    else:
        text = str(key) if key is not None else ""
    return text[:_MAX_KEY_CHARS]


def _kad_request(data: bytes) -> tuple[str, str, str]:
    """(type, target peer id, other key) of the first varint-framed Kademlia message in ``data``.

    The key goes to the target only when it is a peer id (a FIND_NODE for a peer); a FIND_NODE
    for a record's key, as a lookup does, and every other request carry it as ``key`` instead.
    """
    try:
        from libp2p.kad_dht.pb.kademlia_pb2 import Message

        length, shift, pos = 0, 0, 0
        while pos < len(data) and pos < 5:
            byte = data[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            shift += 7
            if not byte & 0x80:
                break
        msg = Message()
        msg.ParseFromString(data[pos : pos + length])
        qtype = _KAD_TYPES.get(int(msg.type), "")
        target = _peer_id_text(msg.key) if msg.type == 4 else ""  # FIND_NODE
        return qtype, target, "" if target else _key_text(msg.key)
    except Exception:
        return "", "", ""


def _being_cancelled() -> bool:
    try:
        return trio.current_effective_deadline() == float("-inf")
    except RuntimeError:
        return False


def _protocol(stream: Any) -> str:
    try:
        return str(stream.get_protocol() or "")
    except Exception:
        return ""


def _is_closed(conn: Any) -> bool:
    ev = getattr(conn, "event_closed", None)
    return bool(ev.is_set()) if ev is not None else bool(getattr(conn, "is_closed", False))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


@asynccontextmanager
async def introspect_host(
    host: Any,
    *,
    dht: Any = None,
    listen_host: str = "127.0.0.1",
    port: int = 0,
    retention_ms: int = DEFAULT_RETENTION_MS,
) -> AsyncIterator[Endpoint]:
    """For trio programs: serve ``host``'s introspection on ``ws://127.0.0.1:PORT/introspect`` in this block.

    The Endpoint runs on an asyncio loop in its own thread (see bridge.py); ``endpoint.listen_addrs()``
    says where. Use it inside ``host.run(...)``::

        async with host.run(listen_addrs), introspect_host(host, dht=dht) as endpoint:
            print(endpoint.listen_addrs())
    """
    insp = Libp2pIntrospection(host, dht=dht, retention_ms=retention_ms)
    insp.attach()
    intro = Introspector(name=insp.peer_id)
    insp.register(intro, TrioBridge.current())
    aio = AsyncioThread()
    endpoint = Endpoint(intro, host=listen_host, port=port)
    try:
        await aio.call(endpoint.start())
        yield endpoint
    finally:
        with trio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await aio.call(endpoint.close())
            await trio.to_thread.run_sync(aio.close)
            insp.detach()
