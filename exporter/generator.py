"""Synthetic introspection data of any size, with realistic churn between snapshots.

Tests and benchmarks use it instead of third-party captures; the README demo replays what it makes.
It emits the same message sequence a real node's session would: Runtime, the config response,
then States and Events in time order.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from exporter.protocol import introspection_pb2 as pb

P = pb.EventType.EventProperty

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
PROTOCOLS = (
    "/ipfs/id/1.0.0",
    "/ipfs/ping/1.0.0",
    "/ipfs/kad/1.0.0",
    "/meshsub/1.1.0",
    "/ipfs/bitswap/1.2.0",
    "/libp2p/circuit/relay/0.2.0/hop",
)
TRANSPORTS = (("tcp", 0.5), ("quic-v1", 0.3), ("ws", 0.1), ("webtransport", 0.1))
# Agent versions as identify reports them (the last one is not a known client: it exports as `other`).
AGENTS = (
    ("kubo/0.24.0/", 0.3),
    ("go-libp2p/0.33.0", 0.2),
    ("Lighthouse/v4.5.0-441fc16/x86_64-linux", 0.15),
    ("Prysm/v4.1.1/8a9fe1b", 0.1),
    ("rust-libp2p/0.53.0", 0.1),
    ("js-libp2p/1.0.0 UserAgent=v20.9.0", 0.05),
    ("py-libp2p/0.8.1", 0.05),
    ("homegrown-node/3.1.4", 0.05),
)
PEERSTORE_MAX_PEERS = 5000


@dataclass
class _Stream:
    id: int
    protocol: str
    role: pb.Role
    open_ts: int
    bytes_in: int = 0
    bytes_out: int = 0
    close_ts: int = 0


@dataclass
class _Conn:
    id: int
    peer_id: str
    role: pb.Role
    transport: str
    local: str
    remote: str
    security: str
    muxer: str
    open_ts: int
    upgraded_ts: int
    latency_ns: int
    streams: dict[int, _Stream] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    close_ts: int = 0
    status: pb.Status = pb.ACTIVE


class SyntheticNode:
    """A node whose State grows and churns deterministically from a seed."""

    def __init__(
        self,
        *,
        connections: int = 50,
        streams_per_conn: int = 3,
        buckets: int = 8,
        churn: float = 0.1,
        seed: int = 1,
        start_ms: int = 1_700_000_000_000,
        interval_ms: int = 1000,
        retention_ms: int = 10_000,
        dht_queries_per_step: int = 4,
        peerstore: bool = False,
        peerstore_leak: int = 0,
    ) -> None:
        self.rng = random.Random(seed)
        # The peerstore has its own random stream, so the rest of a seed's output is as it always was.
        self.ps_rng = random.Random(seed * 7919 + 1)
        self.peerstore = peerstore
        self.ps_leak = peerstore_leak  # peers added each step that never connect (a leaking store)
        self.ps_known = 1  # the node itself
        self.ps_evicted = 0
        self.target = connections
        self.streams_per_conn = streams_per_conn
        self.churn = churn
        self.now = start_ms
        self.start_ms = start_ms
        self.interval_ms = interval_ms
        self.retention_ms = retention_ms
        self.queries_per_step = dht_queries_per_step
        self.peer_id = self.new_peer_id()
        self.conns: dict[int, _Conn] = {}
        self.next_id = 1
        self.node_in = 0
        self.node_out = 0
        self.pending_events: list[pb.ServerMessage] = []
        self.queries = {"in": [0, 0, 0], "out": [0, 0, 0]}
        self.buckets: list[dict[str, tuple[int, int]]] = [{} for _ in range(buckets)]  # peer -> (status, since)
        for _ in range(connections):
            self._open_conn(announce=False)
        for cpl, bucket in enumerate(self.buckets):
            for _ in range(max(1, 20 >> min(cpl, 4))):
                bucket[self.new_peer_id()] = (pb.DHT.PeerInDHT.ACTIVE, self.now)

    # -- identities -------------------------------------------------------------------------
    def new_peer_id(self) -> str:
        return "12D3KooW" + "".join(self.rng.choice(_B58) for _ in range(44))

    def _addr(self, transport: str, v6: bool) -> str:
        host = (
            f"/ip6/2001:db8::{self.rng.randrange(1, 0xFFFF):x}"
            if v6
            else f"/ip4/198.51.100.{self.rng.randrange(1, 255)}"
        )
        port = self.rng.randrange(1024, 65535)
        if transport == "tcp":
            return f"{host}/tcp/{port}"
        if transport == "ws":
            return f"{host}/tcp/{port}/ws"
        if transport == "quic-v1":
            return f"{host}/udp/{port}/quic-v1"
        return f"{host}/udp/{port}/quic-v1/webtransport"

    # -- churn ------------------------------------------------------------------------------
    def _pick_transport(self) -> str:
        r = self.rng.random()
        for name, share in TRANSPORTS:
            r -= share
            if r <= 0:
                return name
        return "tcp"

    def _open_conn(self, announce: bool = True) -> None:
        transport = self._pick_transport()
        v6 = self.rng.random() < 0.2
        opened = self.now - self.rng.randrange(0, 5000 if announce else 600_000)
        conn = _Conn(
            id=self.next_id,
            peer_id=self.new_peer_id()
            if self.rng.random() > 0.1 or not self.conns
            else self.rng.choice(list(self.conns.values())).peer_id,
            role=self.rng.choice((pb.INITIATOR, pb.RESPONDER)),
            transport=transport,
            local=self._addr(transport, v6),
            remote=self._addr(transport, v6),
            security="/noise" if transport in ("tcp", "ws") and self.rng.random() < 0.8 else "/tls/1.0.0",
            muxer="/yamux/1.0.0" if transport in ("tcp", "ws") else "",
            open_ts=opened,
            upgraded_ts=opened + self.rng.randrange(2, 250),
            latency_ns=self.rng.randrange(200_000, 200_000_000),
        )
        self.next_id += 1
        self.ps_known += 1
        for _ in range(self.streams_per_conn):
            self._open_stream(conn)
        self.conns[conn.id] = conn
        if announce:
            self._event(
                "PeerConnecting", {"peerId": conn.peer_id, "transport": transport, "role": _role_name(conn.role)}
            )

    def _open_stream(self, conn: _Conn) -> None:
        sid = self.next_id
        self.next_id += 1
        conn.streams[sid] = _Stream(
            sid, self.rng.choice(PROTOCOLS), self.rng.choice((pb.INITIATOR, pb.RESPONDER)), self.now
        )

    def _close_conn(self, conn: _Conn) -> None:
        conn.close_ts = self.now - self.rng.randrange(0, self.interval_ms)
        conn.status = pb.ERROR if self.rng.random() < 0.05 else pb.CLOSED
        for s in conn.streams.values():
            s.close_ts = s.close_ts or conn.close_ts
        self._event(
            "PeerDisconnecting",
            {
                "peerId": conn.peer_id,
                "transport": conn.transport,
                "openTime": conn.open_ts,
                "age": self.now - conn.open_ts,
            },
        )

    def _event(self, name: str, content: dict[str, object]) -> None:
        msg = pb.ServerMessage()
        msg.version.version = 1
        msg.event.type.name = name
        msg.event.ts = self.now
        msg.event.content = json.dumps(content)
        self.pending_events.append(msg)

    def step(self) -> None:
        """Advance one interval: traffic flows, connections and streams open and close, the DHT moves."""
        self.now += self.interval_ms
        rng = self.rng
        open_conns = [c for c in self.conns.values() if not c.close_ts]
        for c in open_conns:
            for s in c.streams.values():
                if s.close_ts:
                    continue
                grow_in, grow_out = rng.randrange(0, 20_000), rng.randrange(0, 20_000)
                s.bytes_in += grow_in
                s.bytes_out += grow_out
                c.bytes_in += grow_in
                c.bytes_out += grow_out
                self.node_in += grow_in
                self.node_out += grow_out
                if rng.random() < self.churn:
                    s.close_ts = self.now - rng.randrange(0, self.interval_ms)
            if rng.random() < self.churn:
                self._open_stream(c)
            # Closed streams leave the list after a while.
            for sid in [
                sid for sid, s in c.streams.items() if s.close_ts and self.now - s.close_ts > self.retention_ms
            ]:
                del c.streams[sid]
        for c in open_conns:
            if rng.random() < self.churn / 2:
                self._close_conn(c)
        for cid in [cid for cid, c in self.conns.items() if c.close_ts and self.now - c.close_ts > self.retention_ms]:
            del self.conns[cid]
        # Sometimes a connection vanishes without ever showing CLOSED (a server that drops at once).
        if open_conns and rng.random() < self.churn:
            victim = rng.choice(open_conns)
            if not victim.close_ts:
                del self.conns[victim.id]
        while sum(1 for c in self.conns.values() if not c.close_ts) < self.target:
            self._open_conn()
        self._dht_step()
        self.ps_known += self.ps_leak
        if self.ps_known > PEERSTORE_MAX_PEERS:
            self.ps_evicted += self.ps_known - PEERSTORE_MAX_PEERS
            self.ps_known = PEERSTORE_MAX_PEERS

    def _dht_step(self) -> None:
        rng = self.rng
        for bucket in self.buckets:
            for peer in list(bucket):
                status, since = bucket[peer]
                r = rng.random()
                if r < self.churn / 4:
                    del bucket[peer]
                elif r < self.churn / 2:
                    bucket[peer] = (
                        pb.DHT.PeerInDHT.MISSING if status == pb.DHT.PeerInDHT.ACTIVE else pb.DHT.PeerInDHT.ACTIVE,
                        since,
                    )
            if rng.random() < self.churn * 2:
                self.ps_known += 1
                bucket[self.new_peer_id()] = (
                    rng.choice((pb.DHT.PeerInDHT.ACTIVE, pb.DHT.PeerInDHT.CANDIDATE)),
                    self.now,
                )
        for _ in range(self.queries_per_step):
            direction = rng.choice(("in", "out"))
            result = rng.choices((0, 1, 2), weights=(8, 1, 1))[0]
            self.queries[direction][result] += 1
            self._event(
                "InboundDHTQuery" if direction == "in" else "OutboundDHTQuery",
                {
                    "direction": "INBOUND" if direction == "in" else "OUTBOUND",
                    "peerIds": [self.new_peer_id() for _ in range(3)],
                    "queryId": f"{rng.getrandbits(64):016x}",
                    "targetPeerId": self.new_peer_id(),
                    "totalTimeMs": rng.randrange(5, 3000),
                    "totalSteps": rng.randrange(1, 8),
                    "trigger": rng.choice(("API", "DISCOVERY")),
                    "type": rng.choice(("CONTENT", "PROVIDER", "VALUE")),
                    "result": ("SUCCESS", "ERROR", "TIMEOUT")[result],
                },
            )

    # -- messages ---------------------------------------------------------------------------
    def runtime(self) -> pb.ServerMessage:
        msg = pb.ServerMessage()
        msg.version.version = 1
        rt = msg.runtime
        rt.implementation = "synthetic-libp2p"
        rt.version = "0.1.0"
        rt.platform = "python"
        rt.peer_id = self.peer_id
        # Every top-level key of each event's content is declared, so the observer UI has a column for it.
        dht_query = (
            ("direction", P.STRING),
            ("peerIds", P.PEERID),
            ("queryId", P.STRING),
            ("targetPeerId", P.PEERID),
            ("totalTimeMs", P.NUMBER),
            ("totalSteps", P.NUMBER),
            ("trigger", P.STRING),
            ("type", P.STRING),
            ("result", P.STRING),
        )
        for name, props in (
            ("PeerConnecting", (("peerId", P.PEERID), ("transport", P.STRING), ("role", P.STRING))),
            (
                "PeerDisconnecting",
                (("peerId", P.PEERID), ("transport", P.STRING), ("openTime", P.TIME), ("age", P.NUMBER)),
            ),
            ("InboundDHTQuery", dht_query),
            ("OutboundDHTQuery", dht_query),
        ):
            et = rt.event_types.add(name=name)
            for pname, ptype in props:
                et.property_types.add(name=pname, type=ptype, has_multiple=pname == "peerIds")
        return msg

    def config_response(self, covers_ms: int = 0) -> pb.ServerMessage:
        """The effective config; its retention is at least ``covers_ms``, so a reader keeps every State."""
        msg = pb.ServerMessage()
        msg.version.version = 1
        msg.response.effective_config.retention_period_ms = max(self.retention_ms, covers_ms)
        msg.response.effective_config.state_snapshot_interval_ms = self.interval_ms
        return msg

    def state(self) -> pb.ServerMessage:
        msg = pb.ServerMessage()
        msg.version.version = 1
        st = msg.state
        st.instant_ts = self.now
        st.start_ts = self.start_ms
        st.snapshot_duration_ms = self.interval_ms  # the period this State covers (one step), as the schema means
        _gauge(st.traffic, self.node_in, self.node_out)
        for c in self.conns.values():
            pc = st.subsystems.connections.add()
            pc.id = c.id.to_bytes(8, "big")
            pc.peer_id = c.peer_id
            pc.status = c.status
            pc.transport_id = c.transport.encode()
            pc.endpoints.src_multiaddr = c.local
            pc.endpoints.dst_multiaddr = c.remote
            pc.timeline.open_ts = c.open_ts
            pc.timeline.upgraded_ts = c.upgraded_ts
            pc.timeline.close_ts = c.close_ts
            pc.role = c.role
            _gauge(pc.traffic, c.bytes_in, c.bytes_out)
            pc.attribs.multiplexer = c.muxer
            pc.attribs.encryption = c.security
            pc.latency_ns = c.latency_ns
            pc.streams.SetInParent()  # present even when empty (`5a 00`): the observer UI reads it unchecked
            for s in c.streams.values():
                ps = pc.streams.streams.add()
                ps.id = s.id.to_bytes(8, "big")
                ps.protocol = s.protocol
                ps.role = s.role
                _gauge(ps.traffic, s.bytes_in, s.bytes_out)
                ps.timeline.open_ts = s.open_ts
                ps.timeline.close_ts = s.close_ts
                ps.status = pb.CLOSED if s.close_ts else pb.ACTIVE
        dht = st.subsystems.dht
        dht.protocol = "/ipfs/kad/1.0.0"
        dht.enabled = True
        dht.start_ts = self.start_ms
        dht.params.k, dht.params.alpha, dht.params.beta = 20, 3, 3
        for cpl, bucket in enumerate(self.buckets):
            pbkt = dht.buckets.add(cpl=cpl)
            for peer, (status, since) in bucket.items():
                pbkt.peers.add(peer_id=peer, status=status, age_in_bucket=max(0, self.now - since))
        for direction, gauge in (("in", dht.incoming_queries), ("out", dht.outgoing_queries)):
            gauge.success, gauge.error, gauge.timeout = self.queries[direction]
        if self.peerstore:
            self._peerstore(st.subsystems.peerstore)
        return msg

    def _peerstore(self, ps: pb.PeerStore) -> None:
        """The extension (field 100): counts consistent with ``ps_known``, shares drawn per State."""
        rng, known = self.ps_rng, self.ps_known
        ps.known_peers = known
        with_addrs = known - rng.randrange(0, max(1, known // 5))
        ps.peers_with_addrs = with_addrs
        ps.peers_with_keys = known - rng.randrange(0, max(1, known // 10))
        ps.peers_with_records = with_addrs // 2
        identified = with_addrs - rng.randrange(0, max(1, with_addrs // 10))
        ps.peers_with_protocols = identified
        addrs = [known - with_addrs] + [0] * 8
        total = 0
        for _ in range(with_addrs):
            n = min(rng.choice((1, 1, 2, 2, 3, 4, 6, 9, 20)), 70)
            addrs[1 + sum(1 for b in (1, 2, 4, 8, 16, 32, 64) if n > b)] += 1
            total += n
        ps.addrs_per_peer.extend(addrs)
        ps.addrs_total = total
        for proto, share in zip(PROTOCOLS, (1.0, 0.95, 0.6, 0.4, 0.3, 0.05)):
            ps.protocols.add(name=proto, peers=int(identified * share))
        ps.protocols_other = identified // 20
        left = identified
        for agent, share in AGENTS:
            n = min(left, int(identified * share))
            left -= n
            ps.agents.add(name=agent, peers=n)
        latency = [0] * 14
        lat_sum = 0.0
        for _ in range(min(identified, len(self.conns) * 2)):
            v = rng.lognormvariate(-3.5, 1.0)  # median around 30 ms
            latency[
                sum(1 for b in (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10) if v > b)
            ] += 1
            lat_sum += v
        ps.latency_ewma.extend(latency)
        ps.latency_ewma_sum_seconds = lat_sum
        ps.max_peers = PEERSTORE_MAX_PEERS
        ps.evicted_peers = self.ps_evicted

    def messages(self, steps: int) -> Iterator[pb.ServerMessage]:
        """Runtime, config, then ``steps`` intervals of events followed by a State.

        The declared retention covers all ``steps + 1`` States: the observer UI drops States older
        than the retention period when it loads a file, so a shorter one would hide most of it.
        """
        yield self.runtime()
        yield self.config_response(covers_ms=(steps + 1) * self.interval_ms)
        yield self.state()
        for _ in range(steps):
            self.step()
            yield from self.pending_events
            self.pending_events.clear()
            yield self.state()


def _gauge(traffic: pb.Traffic, bytes_in: int, bytes_out: int) -> None:
    traffic.traffic_in.cum_bytes = bytes_in
    traffic.traffic_in.cum_packets = bytes_in // 1200
    traffic.traffic_in.inst_bw = bytes_in // 60
    traffic.traffic_out.cum_bytes = bytes_out
    traffic.traffic_out.cum_packets = bytes_out // 1200
    traffic.traffic_out.inst_bw = bytes_out // 60


def _role_name(role: pb.Role) -> str:
    return "INITIATOR" if role == pb.INITIATOR else "RESPONDER"
