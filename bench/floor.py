"""The floor: the least work any exporter of these metrics must do per State, written as plainly as possible.

Per State it
  1. checks the frame (header, FNV-1a checksum) and parses it (``ServerMessage.FromString``);
  2. reads only the fields a metric needs, by plain attribute access on the parsed message (no
     reflection, no ``ListFields``/``hasattr``): per connection id, status, close_ts, latency, traffic and
     its stream list; per stream id, status, close_ts, protocol and traffic. Fields that never change
     for a connection or stream (role, addresses, security, muxer, open/upgraded time, peer id) are
     read once, when the id is first seen;
  3. keeps the per-node state the counters need and nothing else: one dict of small tuples for the
     connections and one for the streams, keyed by id (labels, open time, whether it was already
     counted closed, last cumulative bytes in and out), rebuilt per State so that ids that left are
     dropped; the previous peer set and DHT peer map;
  4. derives in the same pass what the State changes: opens and closes (by status, close_ts, or
     vanishing; once each), durations, handshake latency, byte increases (a value that went down
     counts in full, as ours), the per-status gauges, the point-in-time latency and age values.
     A connection already closed and counted is, like ours, passed over on its status alone
     (its streams' records reused): what it reports after its close changes no counter.

Why this is the unavoidable work: every metric ours exports needs these fields of every listed
connection and stream in every State (status and close_ts for opens/closes and the status gauges,
cumulative bytes for the per-protocol and per-transport counters, latency and open time for the
point-in-time histograms), and counting each open and close once, and each byte once, needs the
previous State's per-id facts. Nothing is built per State that is not a metric input.

Rendering writes the same samples as ``exporter.sinks.prometheus`` from prebuilt bytes: each series'
``name{labels} `` prefix and each family's HELP/TYPE header is built once and cached, so a render
formats only the values.

Not done (not exercised by the bench inputs; each costs a comparison per State): restart detection
and following a node clock that stepped back. Values are formatted with ``repr(float)``, which the
Prometheus parsers read like prometheus_client's Go-style form.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.model.labels import OTHER, UNKNOWN, Cardinality, short_name
from exporter.model.multiaddr import ip_version_of, transport_of
from exporter.protocol import introspection_pb2 as pb

STATUS = {pb.ACTIVE: "active", pb.CLOSED: "closed", pb.OPENING: "opening", pb.CLOSING: "closing", pb.ERROR: "error"}
CLOSED = frozenset((pb.CLOSED, pb.ERROR))
DHT_STATUS = ("active", "missing", "rejected", "candidate")
IN_TABLE = (0, 1)
INITIATOR = pb.INITIATOR
LIVE, DONE = 0, 1
# Per connection: labels (dir, transport, security, muxer, ip_version), open_ts, peer id, LIVE/DONE,
# last cumulative bytes in and out (0 when not reported). Per stream: dir, open_ts, protocol label,
# LIVE/DONE, last bytes in and out.
Conn = tuple[tuple[str, ...], int, str, int, int, int]
Strm = tuple[str, int, str, int, int, int]


def _transport_text(raw: bytes) -> str:
    return raw.decode("ascii") if raw and all(32 <= b < 127 for b in raw) else ""


class LabelCache:
    """The global label guards, memoised per raw value (admission is sticky, so a cache is exact)."""

    def __init__(self, card: Cardinality) -> None:
        self.card = card
        self.proto_cache: dict[str, str] = {}

    def protocol(self, raw: str) -> str:
        label = self.proto_cache.get(raw)
        if label is None:
            label = self.card.protocol(raw or UNKNOWN)
            if len(self.proto_cache) < 4096:
                self.proto_cache[raw] = label
        return label

    def conn(self, c: pb.Connection) -> tuple[str, str, str, str, str]:
        """(dir, transport, security, muxer, ip_version) of a connection, on first sight only."""
        ends = c.endpoints
        src, dst = ends.src_multiaddr, ends.dst_multiaddr
        tid = _transport_text(c.transport_id)
        card = self.card
        return (
            "outbound" if c.role == INITIATOR else "inbound",
            card.transport(transport_of(src, dst, tid)),
            card.security(short_name(c.attribs.encryption)),
            card.muxer(short_name(c.attribs.multiplexer)),
            ip_version_of(src, dst, tid),
        )


@dataclass(slots=True)
class Step:
    """What one accepted State changed; the floor folds it into totals, the naive exporter into instruments."""

    instant_ts: int = 0
    duration_ms: int = 0
    traffic: tuple[int, int, int, int, int, int] | None = None  # bytes in/out, packets in/out, bw in/out
    conns: dict[tuple[int, tuple[str, ...]], int] = field(default_factory=dict)  # (status, labels4) -> n
    streams: dict[tuple[str, str, int], int] = field(default_factory=dict)  # (protocol, dir, status) -> n
    referenced: int = 0
    peers: int = 0
    joined: int = 0
    left: int = 0
    latencies: list[float] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)
    opened: list[tuple[tuple[str, ...], float | None]] = field(default_factory=list)  # labels5, handshake s
    closed: list[tuple[tuple[str, ...], float | None]] = field(default_factory=list)  # labels5, duration s
    s_opened: list[tuple[str, str]] = field(default_factory=list)  # protocol, dir
    s_closed: list[tuple[str, str, float | None]] = field(default_factory=list)  # protocol, dir, duration s
    proto_bytes: dict[tuple[str, str], int] = field(default_factory=dict)  # increases this State
    transport_bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    dht: DhtStep | None = None


@dataclass(slots=True)
class DhtStep:
    enabled: bool
    params: tuple[int, int, int, int]  # k, alpha, beta, disjoint_paths
    cpls: list[int]
    per_bucket: dict[tuple[str, str], int]
    per_status: dict[str, int]
    queries: tuple[int, ...]  # in success/error/timeout, out success/error/timeout
    added: int
    removed: int
    changed: int


def _cpl(cpl: int) -> str:
    return str(cpl) if cpl <= 256 else OTHER


class Tracker:
    """The per-node state the counters need, advanced by one pass over each State's needed fields."""

    def __init__(self, labels: LabelCache) -> None:
        self.labels = labels
        self.conns: dict[bytes, Conn] = {}
        self.streams: dict[bytes, Strm] = {}
        # Closed and counted connections' streams (key, record, gauge key): passed over on the
        # connection's status in later States, as ours does (lean.py), so the floor skips them too.
        self.done: dict[bytes, list[tuple[bytes, Strm, tuple[str, str, int]]]] = {}
        self.peers: set[str] = set()
        self.dht_peers: dict[str, int] = {}
        self.last_ts = -1

    def step(self, state: pb.State) -> Step | None:
        """One State: None when it repeats or precedes the last accepted one."""
        now = state.instant_ts
        if now and now <= self.last_ts:
            return None
        first = self.last_ts < 0
        last_seen = now if first else self.last_ts
        self.last_ts = now
        out = Step(instant_ts=now, duration_ms=state.snapshot_duration_ms)
        if state.HasField("traffic"):
            t_in, t_out = state.traffic.traffic_in, state.traffic.traffic_out
            out.traffic = (
                t_in.cum_bytes,
                t_out.cum_bytes,
                t_in.cum_packets,
                t_out.cum_packets,
                t_in.inst_bw,
                t_out.inst_bw,
            )
        subs = state.subsystems
        self._connections(subs.connections, now, last_seen, first, out)
        if subs.HasField("dht"):
            out.dht = self._dht(subs.dht)
        return out

    def _connections(self, conns: Iterable[pb.Connection], now: int, last_seen: int, first: bool, out: Step) -> None:
        labels = self.labels
        protocol, pcache = labels.protocol, labels.proto_cache
        old_c, old_s = self.conns, self.streams
        new_c: dict[bytes, Conn] = {}
        new_s: dict[bytes, Strm] = {}
        old_done = self.done
        new_done: dict[bytes, list[tuple[bytes, Strm, tuple[str, str, int]]]] = {}
        gauge_c, gauge_s = out.conns, out.streams
        p_in: dict[str, int] = {}  # byte increases this State by protocol label, then by transport label
        p_out: dict[str, int] = {}
        t_in: dict[str, int] = {}
        t_out: dict[str, int] = {}
        peers: set[str] = set()
        latencies, ages = out.latencies, out.ages
        opened, closed, s_opened, s_closed = out.opened, out.closed, out.s_opened, out.s_closed
        referenced = 0
        for i, c in enumerate(conns):
            key = c.id or f"#{i}:{c.peer_id}".encode()
            status = c.status
            close_ts = c.timeline.close_ts
            c_closed = close_ts != 0 or status in CLOSED
            old = old_c.get(key)
            if c_closed and old is not None:
                kept = old_done.get(key)
                sl = c.streams
                if kept is not None and len(sl.streams) == len(kept):
                    gk = (status, old[0][:4])
                    gauge_c[gk] = gauge_c.get(gk, 0) + 1
                    new_c[key] = old
                    referenced += len(sl.stream_ids)
                    for skey, srec, gk2 in kept:
                        gauge_s[gk2] = gauge_s.get(gk2, 0) + 1
                        new_s[skey] = srec
                    new_done[key] = kept
                    continue
            if old is None:
                tl = c.timeline
                info_labels, open_ts, peer = labels.conn(c), tl.open_ts, c.peer_id
                up_ts, last_in, last_out = tl.upgraded_ts, 0, 0
                if first and c_closed:
                    phase = DONE
                else:
                    hs = (up_ts - open_ts) / 1000.0 if open_ts and up_ts >= open_ts else None
                    opened.append((info_labels, hs))
                    phase = LIVE
            else:
                info_labels, open_ts, peer, phase, last_in, last_out = old
            if phase == LIVE and c_closed:
                end = close_ts or now
                closed.append((info_labels, (end - open_ts) / 1000.0 if open_ts and end >= open_ts else None))
                phase = DONE
            gk = (status, info_labels[:4])
            gauge_c[gk] = gauge_c.get(gk, 0) + 1
            if not c_closed:
                if peer:
                    peers.add(peer)
                lat = c.latency_ns
                if lat:
                    latencies.append(lat / 1e9)
                if open_ts and now >= open_ts:
                    ages.append((now - open_ts) / 1000.0)
            if c.HasField("traffic"):
                t = c.traffic
                b_in, b_out = t.traffic_in.cum_bytes, t.traffic_out.cum_bytes
                tl_label = info_labels[1]
                t_in[tl_label] = t_in.get(tl_label, 0) + (b_in - last_in if b_in >= last_in else b_in)
                t_out[tl_label] = t_out.get(tl_label, 0) + (b_out - last_out if b_out >= last_out else b_out)
            else:
                b_in = b_out = 0  # not reported: forgotten, so a later report counts in full
            new_c[key] = (info_labels, open_ts, peer, phase, b_in, b_out)
            sl = c.streams
            referenced += len(sl.stream_ids)
            direction_c = key + b"/"
            kept_now: list[tuple[bytes, Strm, tuple[str, str, int]]] | None = [] if c_closed else None
            for j, s in enumerate(sl.streams):
                skey = direction_c + (s.id or b"#%d" % j)
                s_status = s.status
                s_close = s.timeline.close_ts
                s_closed_own = s_close != 0 or s_status in CLOSED
                s_closed_any = s_closed_own or c_closed
                raw = s.protocol
                plabel = pcache.get(raw) or protocol(raw)
                sold = old_s.get(skey)
                if sold is None:
                    sdir = "outbound" if s.role == INITIATOR else "inbound"
                    s_open, last_in, last_out = s.timeline.open_ts, 0, 0
                    if first and s_closed_any:
                        sphase = DONE
                    else:
                        s_opened.append((plabel, sdir))
                        sphase = LIVE
                else:
                    sdir, s_open, _, sphase, last_in, last_out = sold
                if sphase == LIVE and s_closed_any:
                    end = s_close or now
                    s_closed.append((plabel, sdir, (end - s_open) / 1000.0 if s_open and end >= s_open else None))
                    sphase = DONE
                gk2 = (plabel, sdir, pb.CLOSED if c_closed and not s_closed_own else s_status)
                gauge_s[gk2] = gauge_s.get(gk2, 0) + 1
                if s.HasField("traffic"):
                    t = s.traffic
                    b_in, b_out = t.traffic_in.cum_bytes, t.traffic_out.cum_bytes
                    p_in[plabel] = p_in.get(plabel, 0) + (b_in - last_in if b_in >= last_in else b_in)
                    p_out[plabel] = p_out.get(plabel, 0) + (b_out - last_out if b_out >= last_out else b_out)
                else:
                    b_in = b_out = 0
                srec = (sdir, s_open, plabel, sphase, b_in, b_out)
                new_s[skey] = srec
                if kept_now is not None:
                    kept_now.append((skey, srec, gk2))
            if kept_now is not None:
                new_done[key] = kept_now
        # Whatever was open and is no longer listed ended when last seen.
        for key, (info_labels, open_ts, _, phase, _, _) in old_c.items():
            if phase == LIVE and key not in new_c:
                closed.append(
                    (info_labels, (last_seen - open_ts) / 1000.0 if open_ts and last_seen >= open_ts else None)
                )
        for skey, (sdir, s_open, plabel, sphase, _, _) in old_s.items():
            if sphase == LIVE and skey not in new_s:
                s_closed.append(
                    (plabel, sdir, (last_seen - s_open) / 1000.0 if s_open and last_seen >= s_open else None)
                )
        self.conns, self.streams, self.done = new_c, new_s, new_done
        for label, n in p_in.items():
            out.proto_bytes[(label, "in")] = n
            out.proto_bytes[(label, "out")] = p_out[label]
        for label, n in t_in.items():
            out.transport_bytes[(label, "in")] = n
            out.transport_bytes[(label, "out")] = t_out[label]
        out.referenced = referenced
        out.peers = len(peers)
        out.joined = len(peers - self.peers)
        out.left = len(self.peers - peers)
        self.peers = peers

    def _dht(self, d: pb.DHT) -> DhtStep:
        peers: dict[str, int] = {}
        cpl_of: dict[str, int] = {}
        cpls: list[int] = []
        for bucket in d.buckets:
            cpl = bucket.cpl
            cpls.append(cpl)
            for p in bucket.peers:
                pid = p.peer_id
                if pid:
                    peers[pid] = p.status
                    cpl_of[pid] = cpl
        per_bucket: dict[tuple[str, str], int] = {}
        per_status = dict.fromkeys(DHT_STATUS, 0)
        for pid, st in peers.items():
            name = DHT_STATUS[st] if 0 <= st < 4 else UNKNOWN
            k = (_cpl(cpl_of[pid]), name)
            per_bucket[k] = per_bucket.get(k, 0) + 1
            per_status[name] = per_status.get(name, 0) + 1
        for label in {_cpl(c) for c in cpls}:
            for name in DHT_STATUS:
                per_bucket.setdefault((label, name), 0)
        old = self.dht_peers
        old_in = {p for p, st in old.items() if st in IN_TABLE}
        new_in = {p for p, st in peers.items() if st in IN_TABLE}
        changed = sum(1 for p, st in peers.items() if p in old and old[p] != st)
        self.dht_peers = peers
        qi, qo, prm = d.incoming_queries, d.outgoing_queries, d.params
        return DhtStep(
            d.enabled,
            (prm.k, prm.alpha, prm.beta, prm.disjoint_paths),
            cpls,
            per_bucket,
            per_status,
            (qi.success, qi.error, qi.timeout, qo.success, qo.error, qo.timeout),
            len(new_in - old_in),
            len(old_in - new_in),
            changed,
        )


class Hist:
    """Bucket counts, sum and count of one histogram series."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


def hist_of(bounds: tuple[float, ...], values: Iterable[float]) -> Hist:
    h = Hist(bounds)
    for v in values:
        h.observe(v)
    return h


def read_needed(state: pb.State) -> int:
    """Only the reads: every field the floor's pass reads for ids it already knows, values dropped.

    The floor minus its bookkeeping: what parse + needed-field access alone costs through the
    protobuf API (first-sight fields such as addresses are read once per new id and left out here).
    """
    n = state.instant_ts + state.snapshot_duration_ms
    if state.HasField("traffic"):
        t = state.traffic
        n += t.traffic_in.cum_bytes + t.traffic_out.cum_bytes + t.traffic_in.inst_bw + t.traffic_out.inst_bw
    subs = state.subsystems
    for c in subs.connections:
        key, status, close_ts, lat = c.id, c.status, c.timeline.close_ts, c.latency_ns
        n += status + close_ts + lat + len(key)
        if c.HasField("traffic"):
            t = c.traffic
            n += t.traffic_in.cum_bytes + t.traffic_out.cum_bytes
        sl = c.streams
        n += len(sl.stream_ids)
        for s in sl.streams:
            sid, s_status, s_close, proto = s.id, s.status, s.timeline.close_ts, s.protocol
            n += s_status + s_close + len(sid) + len(proto)
            if s.HasField("traffic"):
                t = s.traffic
                n += t.traffic_in.cum_bytes + t.traffic_out.cum_bytes
    if subs.HasField("dht"):
        d = subs.dht
        for bucket in d.buckets:
            n += bucket.cpl
            for p in bucket.peers:
                n += len(p.peer_id) + p.status
        q = d.incoming_queries
        n += q.success + q.error + q.timeout + d.params.k
    return n
