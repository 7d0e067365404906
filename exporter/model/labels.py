"""Bounding label values that a remote peer controls.

Protocol ids, transports, security and muxer names, and event type names reach Prometheus only
through an allow-list plus a cap on extra values; anything past the cap becomes ``other`` and is
counted. Peer ids and multiaddrs never become label values.
"""

from __future__ import annotations

import threading

from exporter.defaults import OTHER_CAP, PROTOCOL_CAP

OTHER = "other"
UNKNOWN = "unknown"

KNOWN_PROTOCOLS = frozenset(
    {
        "/ipfs/id/1.0.0",
        "/ipfs/id/push/1.0.0",
        "/p2p/id/delta/1.0.0",
        "/ipfs/ping/1.0.0",
        "/ipfs/kad/1.0.0",
        "/ipfs/lan/kad/1.0.0",
        "/ipfs/bitswap",
        "/ipfs/bitswap/1.0.0",
        "/ipfs/bitswap/1.1.0",
        "/ipfs/bitswap/1.2.0",
        "/floodsub/1.0.0",
        "/meshsub/1.0.0",
        "/meshsub/1.1.0",
        "/meshsub/1.2.0",
        "/libp2p/circuit/relay/0.1.0",
        "/libp2p/circuit/relay/0.2.0/hop",
        "/libp2p/circuit/relay/0.2.0/stop",
        "/libp2p/autonat/1.0.0",
        "/libp2p/autonat/2/dial-request",
        "/libp2p/autonat/2/dial-back",
        "/libp2p/dcutr",
        "/libp2p/fetch/0.0.1",
        "/libp2p/rendezvous/1.0.0",
        "/multistream/1.0.0",
        "/yamux/1.0.0",
        "/mplex/6.7.0",
        "/noise",
        "/tls/1.0.0",
    }
)
KNOWN_TRANSPORTS = frozenset(
    {"circuit", "webrtc", "webrtc-direct", "webtransport", "quic", "quic-v1", "wss", "ws", "tcp", UNKNOWN}
)
KNOWN_SECURITY = frozenset({"noise", "tls", "secio", "plaintext", "insecure", UNKNOWN})
KNOWN_MUXERS = frozenset({"yamux", "mplex", UNKNOWN})
KNOWN_EVENT_TYPES = frozenset(
    {
        "PeerConnecting",
        "PeerDisconnecting",
        "InboundDHTQuery",
        "OutboundDHTQuery",
        "EvtPeerConnectednessChanged",
        "EvtPeerIdentificationCompleted",
        "EvtPeerIdentificationFailed",
        "EvtPeerProtocolsUpdated",
        "EvtLocalAddressesUpdated",
        "EvtLocalReachabilityChanged",
        "EvtLocalProtocolsUpdated",
    }
)


class LabelGuard:
    """Admit allow-listed values always, and at most ``cap`` others first come, first served.

    Admission is sticky, so a value keeps its series for the exporter's lifetime and the total
    number of values per label stays at most ``len(allow) + cap + 1``. ``folded`` counts distinct
    values that became ``other`` (each once, however often it is seen), remembering up to
    ``FOLD_MEMORY`` of them; past that, every further fold counts, so the count never stops rising.
    """

    FOLD_MEMORY = 10_000

    def __init__(self, label: str, allow: frozenset[str], cap: int) -> None:
        self.label = label
        self.allow = allow
        self.cap = cap
        self._extra: set[str] = set()
        self._folded_seen: set[int] = set()
        self.folded = 0
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self.allow or value in self._extra:
            return value
        with self._lock:
            if len(self._extra) < self.cap and len(value) <= 128:
                self._extra.add(value)
                return value
            key = hash(value)
            if key not in self._folded_seen:
                if len(self._folded_seen) < self.FOLD_MEMORY:
                    self._folded_seen.add(key)
                self.folded += 1
            return OTHER


class Cardinality:
    """The guards of one exporter process, shared by all nodes so that caps are global."""

    def __init__(self, protocol_cap: int = PROTOCOL_CAP, other_cap: int = OTHER_CAP) -> None:
        self.protocol = LabelGuard("protocol", KNOWN_PROTOCOLS, protocol_cap)
        self.transport = LabelGuard("transport", KNOWN_TRANSPORTS, 0)
        self.security = LabelGuard("security", KNOWN_SECURITY, other_cap)
        self.muxer = LabelGuard("muxer", KNOWN_MUXERS, other_cap)
        self.event_type = LabelGuard("event_type", KNOWN_EVENT_TYPES, other_cap)

    def guards(self) -> list[LabelGuard]:
        return [self.protocol, self.transport, self.security, self.muxer, self.event_type]


def short_name(value: str) -> str:
    """``/yamux/1.0.0`` -> ``yamux``; ``/noise`` -> ``noise``; empty -> unknown."""
    parts = [part for part in value.strip().split("/") if part]
    if not parts:
        return UNKNOWN
    return parts[0].lower()
