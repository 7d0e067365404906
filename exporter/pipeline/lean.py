"""Lean ingest: one pass over a parsed State into compact per-node state and what the State changed.

Why: building a view object per connection and stream, diffing those, and walking the diff again in
every mapper cost about half of all CPU under load (issue 11). Here each State is read once, straight
from the protobuf, and every counter input is derived in that same pass: opens and closes (by status,
``close_ts`` or vanishing; each once), durations, handshake latency, byte increases per protocol and
transport, and the per-status gauges and point-in-time values the latest State shows. What is kept
between States is one dict of small tuples per kind, keyed by connection and stream id.

The counting rules are those of ``pipeline/diff.py`` (which still feeds push sinks that want views;
``tests/unit/test_counting_engines.py`` holds the two equal on generated States):
an item already closed in the first State seen is never counted; a byte counter that goes down
counts its new value in full; a restart ends everything open at the last instant seen. One rule of
its own: a connection closed and counted is, in the States after, passed over on its status (nodes
keep closed items for the retention period, most of a busy node's State), so bytes it reports after
the State that closed it are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from exporter.model.labels import UNKNOWN, Cardinality, short_name
from exporter.model.multiaddr import ip_version_of, transport_of
from exporter.model.snapshot import (
    IN_ROUTING_TABLE,
    STATUS_NAMES,
    DhtView,
    PeerStoreView,
    dht_view,
    measured,
    peerstore_view,
)
from exporter.protocol import introspection_pb2 as pb

_CLOSED = frozenset((pb.CLOSED, pb.ERROR))
_INITIATOR = pb.INITIATOR
LIVE, DONE = 0, 1  # counted open (a close still to count) / closed and counted, or never counted

# Per connection: (dir, transport, security, muxer, ip_version) labels, phase, open_ts (0 once DONE),
# last bytes in, out.
ConnRec = tuple[tuple[str, str, str, str, str], int, int, int, int]
# Per stream: raw protocol, its label, dir, phase, open_ts (0 once DONE), last bytes in, out.
StreamRec = tuple[str, str, str, int, int, int, int]
# bytes in/out, packets in/out, bandwidth in/out; None for a direction not measured (unset DataGauge)
Traffic6 = tuple[int | None, int | None, int | None, int | None, int | None, int | None]

_T = TypeVar("_T")
# One copy of each value that repeats across streams, connections and nodes (protocol ids, label
# tuples, status gauge keys): every parse hands out a new copy, and a node keeps one per record
# (issue 20: a fifth of a node's memory). Bounded: dropped wholesale at the cap, which only unshares.
_SHARED: dict[object, object] = {}
_SHARED_CAP = 50_000


def _shared(value: _T) -> _T:
    """The one kept copy of ``value`` (an equal value already seen, else ``value`` itself)."""
    held = _SHARED.get(value)
    if held is None:
        if len(_SHARED) >= _SHARED_CAP:
            _SHARED.clear()
        _SHARED[value] = held = value
    return cast(_T, held)


@dataclass(slots=True, eq=False)
class StateStep:
    """One accepted State: what the latest State shows and what it changed, as plain values."""

    instant_ts: int
    start_ts: int
    duration_ms: int
    traffic: Traffic6 | None
    first: bool = False
    restart: bool = False
    # Whether mappers keep recent observations for exemplars: off when nothing can ever export a span
    # for this node (no listener, no ExportedSpans), as they then never reach the output (issue 20).
    exemplars: bool = True
    # What the State shows (gauges).
    conn_status: dict[tuple[str, str, str, str, str], int] = field(default_factory=dict)  # status, 4 labels
    stream_status: dict[tuple[str, str, str], int] = field(default_factory=dict)  # protocol, dir, status
    referenced_streams: int = 0
    peers: frozenset[str] = frozenset()
    open_conns: int = 0
    latencies: list[float] = field(default_factory=list)  # open connections' latency, seconds
    ages: list[float] = field(default_factory=list)  # open connections' age, seconds
    dht: DhtView | None = None
    peerstore: PeerStoreView | None = None  # this project's extension (Subsystems field 100), when sent
    # What the State changed (counter inputs).
    opened: list[tuple[tuple[str, ...], float | None]] = field(default_factory=list)  # labels, handshake s
    closed: list[tuple[tuple[str, ...], float | None]] = field(default_factory=list)  # labels, lifetime s
    s_opened: list[tuple[str, str]] = field(default_factory=list)  # protocol, dir
    s_closed: list[tuple[str, str, float | None]] = field(default_factory=list)  # protocol, dir, lifetime s
    # The ids of those connections and streams, index for index (exemplars link them to their spans).
    opened_ids: list[bytes] = field(default_factory=list)
    closed_ids: list[bytes] = field(default_factory=list)
    s_closed_ids: list[bytes] = field(default_factory=list)
    proto_bytes: dict[tuple[str, str], int] = field(default_factory=dict)  # (protocol, dir) -> increase
    transport_bytes: dict[tuple[str, str], int] = field(default_factory=dict)  # (transport, dir) -> increase
    joined: int = 0
    left: int = 0
    dht_added: int = 0
    dht_removed: int = 0
    dht_changed: int = 0


def _transport_text(raw: bytes) -> str:
    """transport_id is opaque bytes; Go servers put text like ``ip4+tcp`` there."""
    return raw.decode("ascii") if raw and all(32 <= b < 127 for b in raw) else ""


def traffic_of(msg: pb.State | pb.Connection | pb.Stream) -> Traffic6 | None:
    """The traffic ``msg`` reports, None when it has none or neither direction was measured."""
    if not msg.HasField("traffic"):
        return None
    t_in, t_out = msg.traffic.traffic_in, msg.traffic.traffic_out
    has_in, has_out = measured(t_in), measured(t_out)
    if not (has_in or has_out):
        return None
    i = (t_in.cum_bytes, t_in.cum_packets, t_in.inst_bw) if has_in else (None, None, None)
    o = (t_out.cum_bytes, t_out.cum_packets, t_out.inst_bw) if has_out else (None, None, None)
    return (i[0], o[0], i[1], o[1], i[2], o[2])


class LeanTracker:
    """The per-node state the counters need, advanced by one pass over each State."""

    __slots__ = ("card", "conns", "dht", "done", "last_ts", "peers", "streams")

    def __init__(self, card: Cardinality) -> None:
        self.card = card
        self.conns: dict[bytes, ConnRec] = {}
        self.streams: dict[bytes, StreamRec] = {}
        # Closed and counted connections, with their streams (key, record, status gauge key): a node
        # keeps closed items in its States for the retention period, so most of a busy node's State is
        # these; each is passed over on its status alone (see _connections).
        self.done: dict[bytes, list[tuple[bytes, StreamRec, tuple[str, str, str]]]] = {}
        self.peers: frozenset[str] = frozenset()
        self.dht: DhtView | None = None
        self.last_ts: int | None = None  # instant_ts of the previous accepted State

    def _conn_labels(self, c: pb.Connection) -> tuple[str, str, str, str, str]:
        ends = c.endpoints
        src, dst = ends.src_multiaddr, ends.dst_multiaddr
        tid = _transport_text(c.transport_id)
        card = self.card
        attribs = c.attribs
        return (
            "outbound" if c.role == _INITIATOR else "inbound",
            card.transport(transport_of(src, dst, tid)),
            card.security(short_name(attribs.encryption)),
            card.muxer(short_name(attribs.multiplexer)),
            ip_version_of(src, dst, tid),
        )

    def step(self, state: pb.State, restart: bool) -> StateStep:
        """Advance by one accepted State (``restart``: the node restarted since the previous one)."""
        now = state.instant_ts
        first = self.last_ts is None
        last_seen = now if self.last_ts is None else self.last_ts
        out = StateStep(
            now, state.start_ts, state.snapshot_duration_ms, traffic_of(state), first, restart and not first
        )
        prev_peers = self.peers
        if out.restart:  # everything open ends at the last instant seen; ids may be reused
            self._end_all(out, last_seen)
            out.left = len(prev_peers)
            prev_peers = frozenset()
        self._connections(state.subsystems.connections, now, last_seen, first, out)
        peers = out.peers
        out.joined += len(peers - prev_peers)
        out.left += len(prev_peers - peers)
        self.peers = peers
        subs = state.subsystems
        if subs.HasField("dht"):
            out.dht = dht_view(subs.dht)
        if subs.HasField("peerstore"):
            out.peerstore = peerstore_view(subs.peerstore)
        self._dht_changes(out)
        self.last_ts = now
        return out

    def _end_all(self, out: StateStep, last_seen: int) -> None:
        for key, (labels, phase, open_ts, _i, _o) in self.conns.items():
            if phase == LIVE:
                out.closed.append(
                    (labels, (last_seen - open_ts) / 1000.0 if open_ts and last_seen >= open_ts else None)
                )
                out.closed_ids.append(key)
        for skey, (_raw, proto, sdir, phase, open_ts, _i, _o) in self.streams.items():
            if phase == LIVE:
                dur = (last_seen - open_ts) / 1000.0 if open_ts and last_seen >= open_ts else None
                out.s_closed.append((proto, sdir, dur))
                out.s_closed_ids.append(skey)
        self.conns = {}
        self.streams = {}
        self.done = {}

    def _connections(
        self, conns: Sequence[pb.Connection], now: int, last_seen: int, first: bool, out: StateStep
    ) -> None:
        protocol = self.card.protocol
        old_c, old_s = self.conns, self.streams
        new_c: dict[bytes, ConnRec] = {}
        new_s: dict[bytes, StreamRec] = {}
        old_done = self.done
        new_done: dict[bytes, list[tuple[bytes, StreamRec, tuple[str, str, str]]]] = {}
        conn_status, stream_status = out.conn_status, out.stream_status
        opened, closed, s_opened, s_closed = out.opened, out.closed, out.s_opened, out.s_closed
        opened_ids, closed_ids, s_closed_ids = out.opened_ids, out.closed_ids, out.s_closed_ids
        latencies, ages = out.latencies, out.ages
        pbytes, tbytes = out.proto_bytes, out.transport_bytes
        peers: set[str] = set()
        referenced = open_conns = 0
        status_names = STATUS_NAMES
        for i, c in enumerate(conns):
            key = c.id or f"#{i}:{c.peer_id}".encode()
            status = c.status
            tl = c.timeline
            close_ts = tl.close_ts
            c_closed = close_ts != 0 or status in _CLOSED
            old = old_c.get(key)
            if c_closed and old is not None:
                # Closed and counted before: its streams were closed with it, and what a closed
                # connection reports no longer changes a counter (its bytes were taken when it
                # closed), so only the status gauges need it. Unless its streams were pruned since.
                kept = old_done.get(key)
                streams = c.streams
                if kept is not None and len(streams.streams) == len(kept):
                    labels = old[0]
                    gkey = (status_names.get(status, "unknown"), labels[0], labels[1], labels[2], labels[3])
                    conn_status[gkey] = conn_status.get(gkey, 0) + 1
                    new_c[key] = old
                    referenced += len(streams.stream_ids)
                    for skey, srec, gk in kept:
                        stream_status[gk] = stream_status.get(gk, 0) + 1
                        new_s[skey] = srec
                    new_done[key] = kept
                    continue
            if old is None:
                labels = _shared(self._conn_labels(c))
                open_ts = tl.open_ts
                last_in = last_out = 0
                if first and c_closed:
                    phase = DONE
                else:
                    up_ts = tl.upgraded_ts
                    opened.append((labels, (up_ts - open_ts) / 1000.0 if open_ts and up_ts >= open_ts else None))
                    opened_ids.append(key)
                    phase = LIVE
            else:
                labels, phase, _open, last_in, last_out = old
                open_ts = tl.open_ts
            if c_closed:
                if phase == LIVE:
                    end = close_ts or now
                    closed.append((labels, (end - open_ts) / 1000.0 if open_ts and end >= open_ts else None))
                    closed_ids.append(key)
                    phase = DONE
            else:
                open_conns += 1
                if c.peer_id:
                    peers.add(c.peer_id)
                if c.latency_ns:
                    latencies.append(c.latency_ns / 1e9)
                if open_ts and now >= open_ts:
                    ages.append((now - open_ts) / 1000.0)
            gkey = (status_names.get(status, "unknown"), labels[0], labels[1], labels[2], labels[3])
            conn_status[gkey] = conn_status.get(gkey, 0) + 1
            b_in = b_out = 0
            if c.HasField("traffic"):
                # _add, inlined: this loop runs for every connection and stream of every State. A
                # direction whose DataGauge is all zero was not measured: no increase, no series.
                t = c.traffic.traffic_in
                if t.cum_bytes or t.cum_packets or t.inst_bw:
                    b_in = t.cum_bytes
                    k = (labels[1], "in")
                    tbytes[k] = tbytes.get(k, 0) + (b_in - last_in if b_in >= last_in else b_in)
                t = c.traffic.traffic_out
                if t.cum_bytes or t.cum_packets or t.inst_bw:
                    b_out = t.cum_bytes
                    k = (labels[1], "out")
                    tbytes[k] = tbytes.get(k, 0) + (b_out - last_out if b_out >= last_out else b_out)
            # A counted close never reads open_ts again: 0 (a shared small int) instead of one int per record.
            new_c[key] = (labels, phase, open_ts if phase == LIVE else 0, b_in, b_out)

            streams = c.streams
            referenced += len(streams.stream_ids)
            closed_streams: list[tuple[bytes, StreamRec, tuple[str, str, str]]] | None = [] if c_closed else None
            for j, s in enumerate(streams.streams):
                skey = key + b"/" + (s.id or f"#{j}".encode())
                raw = s.protocol or UNKNOWN
                s_status = s.status
                s_close = s.timeline.close_ts
                s_own_closed = s_close != 0 or s_status in _CLOSED
                s_closed_now = s_own_closed or c_closed
                sold = old_s.get(skey)
                if sold is None:
                    raw = _shared(raw)
                    proto = protocol(raw)
                    sdir = "outbound" if s.role == _INITIATOR else "inbound"
                    last_in = last_out = 0
                    if first and s_closed_now:
                        sphase = DONE
                    else:
                        s_opened.append((proto, sdir))
                        sphase = LIVE
                else:
                    old_raw, proto, sdir, sphase, _sopen, last_in, last_out = sold
                    if raw == old_raw:
                        raw = old_raw  # the copy already kept, not this parse's
                    else:  # the protocol was negotiated (or changed) since
                        raw = _shared(raw)
                        proto = protocol(raw)
                s_open = s.timeline.open_ts
                if s_closed_now and sphase == LIVE:
                    end = s_close or now
                    s_closed.append((proto, sdir, (end - s_open) / 1000.0 if s_open and end >= s_open else None))
                    s_closed_ids.append(skey)
                    sphase = DONE
                sstatus = "closed" if (c_closed and not s_own_closed) else status_names.get(s_status, "unknown")
                gk = (proto, sdir, sstatus)
                stream_status[gk] = stream_status.get(gk, 0) + 1
                b_in = b_out = 0
                if s.HasField("traffic"):  # as for connections: an all-zero DataGauge is unset
                    t = s.traffic.traffic_in
                    if t.cum_bytes or t.cum_packets or t.inst_bw:
                        b_in = t.cum_bytes
                        k = (proto, "in")
                        pbytes[k] = pbytes.get(k, 0) + (b_in - last_in if b_in >= last_in else b_in)
                    t = s.traffic.traffic_out
                    if t.cum_bytes or t.cum_packets or t.inst_bw:
                        b_out = t.cum_bytes
                        k = (proto, "out")
                        pbytes[k] = pbytes.get(k, 0) + (b_out - last_out if b_out >= last_out else b_out)
                srec = (raw, proto, sdir, sphase, s_open if sphase == LIVE else 0, b_in, b_out)  # as new_c's
                new_s[skey] = srec
                if closed_streams is not None:
                    closed_streams.append((skey, srec, _shared(gk)))
            if closed_streams is not None:
                new_done[key] = closed_streams
        # Open items that left the State end at the last instant they were seen.
        for key, (labels, phase, open_ts, _i, _o) in old_c.items():
            if phase == LIVE and key not in new_c:
                closed.append((labels, (last_seen - open_ts) / 1000.0 if open_ts and last_seen >= open_ts else None))
                closed_ids.append(key)
        for key, (_raw, proto, sdir, phase, open_ts, _i, _o) in old_s.items():
            if phase == LIVE and key not in new_s:
                dur = (last_seen - open_ts) / 1000.0 if open_ts and last_seen >= open_ts else None
                s_closed.append((proto, sdir, dur))
                s_closed_ids.append(key)
        self.conns, self.streams, self.done = new_c, new_s, new_done
        out.peers = frozenset(peers)
        out.referenced_streams = referenced
        out.open_conns = open_conns

    def _dht_changes(self, out: StateStep) -> None:
        prev, cur = self.dht, out.dht
        old = prev.peers if prev is not None else {}
        new = cur.peers if cur is not None else {}
        old_in = {p for p, v in old.items() if v.status in IN_ROUTING_TABLE}
        new_in = {p for p, v in new.items() if v.status in IN_ROUTING_TABLE}
        if out.restart:  # a restarted node starts an empty routing table
            out.dht_added, out.dht_removed = len(new_in), len(old_in)
        else:
            out.dht_added = len(new_in - old_in)
            out.dht_removed = len(old_in - new_in)
            out.dht_changed = sum(1 for p, v in new.items() if p in old and old[p].status != v.status)
        self.dht = cur
