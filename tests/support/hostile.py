"""What a hostile node sends (issue 13), built once so that tests at every tier abuse the exporter alike.

- a resync bomb: one WebSocket message of repeated ``01 00 00 00``, which looks like a header at
  every fourth offset and makes the reader resynchronise over the whole frame;
- a label-combination State: 6,160 connections, each a distinct dir x transport x ip_version x
  security x muxer combination (every label stays within its own cap; together they multiply);
- a distinct-values State: streams whose protocol ids are all different, past any label cap.
"""

from __future__ import annotations

import itertools

from exporter.protocol import introspection_pb2 as pb

TRANSPORTS = ["/tcp/4001", "/tcp/4001/ws", "/tcp/443/tls/ws", "/udp/4001/quic-v1", "/udp/4001/quic",
              "/udp/4001/quic-v1/webtransport", "/udp/4001/webrtc-direct", "/tcp/4001/p2p-circuit",
              "/udp/9/utp", "/sctp/5"]  # fmt: skip
IPS = ["/ip4/10.1.2.3", "/ip6/fd00::1"]
SECURITY = ["/noise", "/tls/1.0.0", "/secio/1.0.0", *(f"/evil-sec-{i}/1" for i in range(11))]
MUXERS = ["/yamux/1.0.0", "/mplex/6.7.0", *(f"/evil-mux-{i}/1" for i in range(9))]
COMBINATIONS = 6160  # 2 roles x 10 transports x 2 ips x 14 security x 11 muxers
BOMB_UNIT = b"\x01\x00\x00\x00"


def resync_bomb(size: int) -> bytes:
    """``size`` bytes (rounded down to whole units) of a header-like unit repeated."""
    return BOMB_UNIT * (size // len(BOMB_UNIT))


def combination_state(ts: int, closed: bool, first_id: int = 0) -> pb.ServerMessage:
    """A State of 6,160 connections, one per label combination; ids count up from ``first_id``."""
    msg = pb.ServerMessage()
    st = msg.state
    st.instant_ts = ts
    st.traffic.traffic_in.cum_bytes = st.traffic.traffic_out.cum_bytes = 1
    combos = itertools.product((pb.INITIATOR, pb.RESPONDER), TRANSPORTS, IPS, SECURITY, MUXERS)
    for i, (role, transport, ip, sec, mux) in enumerate(itertools.islice(combos, COMBINATIONS)):
        c = st.subsystems.connections.add()
        c.id = (first_id + i).to_bytes(8, "big")
        c.peer_id = f"peer{first_id + i}"
        c.role = role
        c.status = pb.CLOSED if closed else pb.ACTIVE
        c.endpoints.src_multiaddr = ip + transport
        c.endpoints.dst_multiaddr = ip + transport
        c.attribs.encryption = sec
        c.attribs.multiplexer = mux
        c.timeline.open_ts = 1000
        c.timeline.upgraded_ts = 1000 + i % 500
        if closed:
            c.timeline.close_ts = ts
    return msg


def distinct_values_state(ts: int, values: int, first: int = 0, per_connection: int = 1000) -> pb.ServerMessage:
    """A State whose streams carry ``values`` protocol ids never seen before (numbered from ``first``)."""
    msg = pb.ServerMessage()
    st = msg.state
    st.instant_ts = ts
    st.traffic.traffic_in.cum_bytes = st.traffic.traffic_out.cum_bytes = 1
    conn: pb.Connection | None = None
    for i in range(values):
        if i % per_connection == 0:
            conn = st.subsystems.connections.add()
            conn.id = (first + i).to_bytes(8, "big")
            conn.peer_id = f"distinct{first + i}"
            conn.endpoints.dst_multiaddr = "/ip4/10.9.9.9/tcp/4001"
            conn.attribs.encryption = "/noise"
            conn.attribs.multiplexer = "/yamux/1.0.0"
            conn.timeline.open_ts = 1000
        assert conn is not None
        s = conn.streams.streams.add()
        s.id = (first + i).to_bytes(8, "big")
        s.protocol = f"/evil/{first + i}/1.0.0"
        s.timeline.open_ts = 1000
    return msg
