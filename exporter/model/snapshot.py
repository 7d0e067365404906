"""The snapshot model: what the sinks need from one State, keyed for diffing.

Built once per State; mappers and sinks read it and never touch protobuf objects directly, so a schema
quirk (proto3 zero values, inlined vs referenced streams, ids as opaque bytes) is handled here once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.model.labels import UNKNOWN, short_name
from exporter.model.multiaddr import ip_version_of, transport_of
from exporter.protocol import introspection_pb2 as pb

CLOSED_STATUSES = (pb.CLOSED, pb.ERROR)
STATUS_NAMES: dict[int, str] = {
    pb.ACTIVE: "active",
    pb.CLOSED: "closed",
    pb.OPENING: "opening",
    pb.CLOSING: "closing",
    pb.ERROR: "error",
}
DHT_STATUS_NAMES = {0: "active", 1: "missing", 2: "rejected", 3: "candidate"}
IN_ROUTING_TABLE = (0, 1)  # ACTIVE, MISSING: a peer that sits in a bucket


def role_dir(role: int) -> str:
    """go-libp2p's ``dir`` label: we initiated = outbound."""
    return "outbound" if role == pb.INITIATOR else "inbound"


def measured(gauge: pb.DataGauge) -> bool:
    """A DataGauge whose fields are all zero is unset (proto3: a zero is not sent, so an empty gauge
    and an absent one look alike): nothing was measured, and nothing may be made from it.

    A producer that cannot measure a connection's or stream's traffic still sends an empty Traffic
    (the observer UI reads it unchecked; producers/go does so, docs/go-producer.md).
    """
    return bool(gauge.cum_bytes or gauge.cum_packets or gauge.inst_bw)


@dataclass(slots=True)
class TrafficView:
    """One Traffic; a direction whose DataGauge is unset (``measured``) reads as zeros with its
    ``has_`` flag off, and ``present`` is off when neither direction was measured."""

    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bw_in: int = 0
    bw_out: int = 0
    present: bool = False
    has_in: bool = False
    has_out: bool = False

    @classmethod
    def of(cls, traffic: pb.Traffic, has: bool) -> TrafficView:
        if not has:
            return cls()
        t_in = traffic.traffic_in
        t_out = traffic.traffic_out
        has_in, has_out = measured(t_in), measured(t_out)
        if not (has_in or has_out):
            return cls()
        return cls(
            t_in.cum_bytes,
            t_out.cum_bytes,
            t_in.cum_packets,
            t_out.cum_packets,
            t_in.inst_bw,
            t_out.inst_bw,
            True,
            has_in,
            has_out,
        )


@dataclass(slots=True)
class StreamView:
    key: bytes
    protocol: str
    dir: str
    status: int
    open_ts: int
    close_ts: int
    traffic: TrafficView
    latency_ns: int

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_STATUSES or self.close_ts != 0


@dataclass(slots=True)
class ConnView:
    id: bytes
    peer_id: str
    status: int
    dir: str
    transport: str
    ip_version: str
    security: str
    muxer: str
    open_ts: int
    upgraded_ts: int
    close_ts: int
    latency_ns: int
    traffic: TrafficView
    streams: dict[bytes, StreamView]
    local_addr: str
    remote_addr: str
    relayed_over: bytes

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_STATUSES or self.close_ts != 0


@dataclass(slots=True)
class DhtPeerView:
    peer_id: str
    status: int
    cpl: int
    age_ms: int


@dataclass(slots=True)
class DhtView:
    protocol: str
    enabled: bool
    start_ts: int
    k: int
    alpha: int
    beta: int
    disjoint_paths: int
    bucket_cpls: list[int]
    peers: dict[str, DhtPeerView]
    incoming: tuple[int, int, int]  # success, error, timeout
    outgoing: tuple[int, int, int]


@dataclass(slots=True)
class Snapshot:
    instant_ts: int
    start_ts: int
    duration_ms: int
    traffic: TrafficView
    conns: dict[bytes, ConnView]
    dht: DhtView | None
    referenced_streams: int = 0
    peers: frozenset[str] = field(default_factory=frozenset)
    peerstore: PeerStoreView | None = None


# The fixed bucket layouts of PeerStore.addrs_per_peer and .latency_ewma (proto/introspection.proto).
ADDRS_PER_PEER_BOUNDS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
LATENCY_EWMA_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NAME_MAX = 256  # longer names (protocol ids, agents) from a producer are cut here, before any guard


@dataclass(slots=True)
class PeerStoreView:
    """The peerstore extension (field 100); ``None`` in optional fields means the producer did not say."""

    known: int
    with_addrs: int | None
    with_keys: int | None
    with_records: int | None
    with_protocols: int | None
    addrs_per_peer: list[int]  # len(ADDRS_PER_PEER_BOUNDS) + 1 counts, or empty when not sent
    addrs_total: int
    protocols: list[tuple[str, int]]
    protocols_other: int
    agents: list[tuple[str, int]]
    agents_other: int
    latency_ewma: list[int]  # len(LATENCY_EWMA_BOUNDS) + 1 counts, or empty when not sent
    latency_ewma_sum: float | None  # None: not a finite, non-negative number (the histogram is left out)
    max_peers: int | None
    max_records: int | None
    evicted: int | None


def _fixed_layout(counts: Iterable[int], size: int) -> list[int]:
    """Counts on a layout of ``size`` buckets; entries past it belong to the last ("more") bucket."""
    values = list(counts)
    if not values:
        return []
    out = values[:size] + [0] * (size - len(values))
    out[-1] += sum(values[size:])
    return out


def _opt(msg: pb.PeerStore, name: str) -> int | None:
    return int(getattr(msg, name)) if msg.HasField(name) else None


def peerstore_view(ps: pb.PeerStore) -> PeerStoreView:
    lat_sum = ps.latency_ewma_sum_seconds
    return PeerStoreView(
        known=ps.known_peers,
        with_addrs=_opt(ps, "peers_with_addrs"),
        with_keys=_opt(ps, "peers_with_keys"),
        with_records=_opt(ps, "peers_with_records"),
        with_protocols=_opt(ps, "peers_with_protocols"),
        addrs_per_peer=_fixed_layout(ps.addrs_per_peer, len(ADDRS_PER_PEER_BOUNDS) + 1),
        addrs_total=ps.addrs_total,
        protocols=[(p.name[:NAME_MAX], p.peers) for p in ps.protocols],
        protocols_other=ps.protocols_other,
        agents=[(a.name[:NAME_MAX], a.peers) for a in ps.agents],
        agents_other=ps.agents_other,
        latency_ewma=_fixed_layout(ps.latency_ewma, len(LATENCY_EWMA_BOUNDS) + 1),
        latency_ewma_sum=lat_sum if math.isfinite(lat_sum) and lat_sum >= 0 else None,
        max_peers=_opt(ps, "max_peers"),
        max_records=_opt(ps, "max_records"),
        evicted=_opt(ps, "evicted_peers"),
    )


def _transport_text(raw: bytes) -> str:
    """transport_id is opaque bytes; Go servers put text like ``ip4+tcp`` there."""
    if raw and all(32 <= b < 127 for b in raw):
        return raw.decode("ascii")
    return ""


def _stream(s: pb.Stream, conn_key: bytes, index: int) -> StreamView:
    key = s.id or f"#{index}".encode()
    return StreamView(
        key=conn_key + b"/" + key,
        protocol=s.protocol or UNKNOWN,
        dir=role_dir(s.role),
        status=s.status,
        open_ts=s.timeline.open_ts,
        close_ts=s.timeline.close_ts,
        traffic=TrafficView.of(s.traffic, s.HasField("traffic")),
        latency_ns=s.latency_ns,
    )


@functools.lru_cache(maxsize=8192)
def _addr_labels(src: str, dst: str, tid: str) -> tuple[str, str]:
    """transport and IP version of a connection's addresses: the same in every State it appears in, so
    derived once (bounded: remote peers choose the addresses)."""
    return transport_of(src, dst, tid), ip_version_of(src, dst, tid)


def _conn(c: pb.Connection, index: int) -> tuple[ConnView, int]:
    key = c.id or f"#{index}:{c.peer_id}".encode()
    ends = c.endpoints
    src, dst = ends.src_multiaddr, ends.dst_multiaddr
    tid = _transport_text(c.transport_id)
    streams: dict[bytes, StreamView] = {}
    for i, s in enumerate(c.streams.streams):
        stream = _stream(s, key, i)
        streams[stream.key] = stream
    relayed = c.conn_id if c.HasField("conn_id") else (c.conn.id if c.HasField("conn") else b"")
    transport, ip_version = _addr_labels(src, dst, tid)
    view = ConnView(
        id=key,
        peer_id=c.peer_id,
        status=c.status,
        dir=role_dir(c.role),
        transport=transport,
        ip_version=ip_version,
        security=short_name(c.attribs.encryption),
        muxer=short_name(c.attribs.multiplexer),
        open_ts=c.timeline.open_ts,
        upgraded_ts=c.timeline.upgraded_ts,
        close_ts=c.timeline.close_ts,
        latency_ns=c.latency_ns,
        traffic=TrafficView.of(c.traffic, c.HasField("traffic")),
        streams=streams,
        local_addr=src,
        remote_addr=dst,
        relayed_over=relayed,
    )
    return view, len(c.streams.stream_ids)


def dht_view(d: pb.DHT) -> DhtView:
    """The DHT section as a view (small: one entry per routing-table peer)."""
    peers: dict[str, DhtPeerView] = {}
    cpls: list[int] = []
    for bucket in d.buckets:
        cpls.append(bucket.cpl)
        for p in bucket.peers:
            peer_id = p.peer_id  # read once: each read of a protobuf string field makes a new copy
            if peer_id:
                peers[peer_id] = DhtPeerView(peer_id, p.status, bucket.cpl, p.age_in_bucket)
    q_in, q_out = d.incoming_queries, d.outgoing_queries
    return DhtView(
        protocol=d.protocol,
        enabled=d.enabled,
        start_ts=d.start_ts,
        k=d.params.k,
        alpha=d.params.alpha,
        beta=d.params.beta,
        disjoint_paths=d.params.disjoint_paths,
        bucket_cpls=cpls,
        peers=peers,
        incoming=(q_in.success, q_in.error, q_in.timeout),
        outgoing=(q_out.success, q_out.error, q_out.timeout),
    )


def snapshot_of(state: pb.State) -> Snapshot:
    conns: dict[bytes, ConnView] = {}
    referenced = 0
    for i, c in enumerate(state.subsystems.connections):
        view, refs = _conn(c, i)
        conns[view.id] = view
        referenced += refs
    peers = frozenset(c.peer_id for c in conns.values() if c.peer_id and not c.closed)
    dht = dht_view(state.subsystems.dht) if state.subsystems.HasField("dht") else None
    peerstore = peerstore_view(state.subsystems.peerstore) if state.subsystems.HasField("peerstore") else None
    return Snapshot(
        instant_ts=state.instant_ts,
        start_ts=state.start_ts,
        duration_ms=state.snapshot_duration_ms,
        traffic=TrafficView.of(state.traffic, state.HasField("traffic")),
        conns=conns,
        dht=dht,
        referenced_streams=referenced,
        peers=peers,
        peerstore=peerstore,
    )
