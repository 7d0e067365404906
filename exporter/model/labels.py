"""Bounding label values that a remote peer controls.

Protocol ids, transports, security and muxer names, and event type names reach Prometheus only
through an allow-list plus a cap on extra values; anything past the cap becomes ``other`` and is
counted. Peer ids and multiaddrs never become label values.
"""

from __future__ import annotations

import re
import threading

from exporter.model.catalogue import Family
from exporter.model.histogram_profiles import HistogramProfile, profile
from exporter.settings import Limits

OTHER = "other"
UNKNOWN = "unknown"

# Written by every guard's owner: the exporter's globals (the process-wide guards) and the pubsub mapper.
LABEL_VALUES_FOLDED = Family(
    "libp2p_exporter_label_values_folded",
    "counter",
    "Label values a remote peer controls that went past the allow-list and cap and became 'other'.",
    ("label",),
)

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

# Agent names (identify's agent version, first part) kept as labels: libp2p implementations, and
# well-known clients built on them. Anything else is `other`; versions are folded to major.minor.
KNOWN_AGENTS = frozenset(
    {
        "go-libp2p",
        "rust-libp2p",
        "js-libp2p",
        "py-libp2p",
        "nim-libp2p",
        "jvm-libp2p",
        "cpp-libp2p",
        "dotnet-libp2p",
        "zig-libp2p",
        "kubo",
        "go-ipfs",
        "ipfs-cluster",
        "helia",
        "js-ipfs",
        "hydra-booster",
        "lotus",
        "boost",
        "forest",
        "venus",
        "lighthouse",
        "prysm",
        "teku",
        "nimbus",
        "lodestar",
        "grandine",
        "erigon",
        "polkadot",
        "substrate",
        OTHER,
    }
)
# name, then "/" or spaces (or "-" right before the version, as in lotus-1.25.0), an optional "v", major.minor
_AGENT = re.compile(r"([a-z][a-z0-9_.-]*?)(?:[/ ]+|-(?=v?\d))v?(\d{1,6})\.(\d{1,6})")


def parse_agent(raw: str) -> tuple[str, str]:
    """``kubo/0.24.0/abc`` -> ("kubo", "0.24"); an unknown name -> ("other", "other"); no version -> "unknown"."""
    text = raw.strip().lower()
    m = _AGENT.match(text)
    if m:
        name, version = m[1], f"{int(m[2])}.{int(m[3])}"
    else:
        name, version = re.split(r"[/ ]", text, maxsplit=1)[0], UNKNOWN
    if name not in KNOWN_AGENTS or name == OTHER:
        return OTHER, OTHER
    return name, version


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

    def __init__(
        self,
        protocol_cap: int = Limits.protocol_cap,
        other_cap: int = Limits.other_cap,
        agent_version_cap: int = Limits.agent_version_cap,
        series_per_family: int = Limits.series_per_family,
        series_per_node: int = Limits.series_per_node,
        histograms: HistogramProfile | None = None,
    ) -> None:
        # Which buckets and labels each histogram family is exported with (model/histogram_profiles.py).
        self.histograms = histograms or profile()
        # Each node's series budget (enforced where samples are written: model/budget.py).
        self.series_per_family = series_per_family
        self.series_per_node = series_per_node
        self.protocol = LabelGuard("protocol", KNOWN_PROTOCOLS, protocol_cap)
        self.transport = LabelGuard("transport", KNOWN_TRANSPORTS, 0)
        self.security = LabelGuard("security", KNOWN_SECURITY, other_cap)
        self.muxer = LabelGuard("muxer", KNOWN_MUXERS, other_cap)
        self.event_type = LabelGuard("event_type", KNOWN_EVENT_TYPES, other_cap)
        # Peerstore agents: the name through the allow-list alone, (name, major.minor) pairs capped.
        self.agent = LabelGuard("agent", KNOWN_AGENTS, 0)
        self.agent_version = LabelGuard("agent_version", frozenset(), agent_version_cap)
        self._agents_seen = False

    def guards(self) -> list[LabelGuard]:
        """Every guard; the agent guards once an agent was seen (a capture without any exports as before)."""
        base = [self.protocol, self.transport, self.security, self.muxer, self.event_type]
        return [*base, self.agent, self.agent_version] if self._agents_seen else base

    def agent_labels(self, raw: str) -> tuple[str, str]:
        """(agent, version) label values for an agent string a remote peer sent, both bounded."""
        self._agents_seen = True
        name, version = parse_agent(raw)
        if name == OTHER:
            self.agent(raw[:128])  # counted as folded, once per distinct value
            return OTHER, OTHER
        if version == UNKNOWN:
            return name, UNKNOWN
        return name, version if self.agent_version(f"{name}/{version}") != OTHER else OTHER


def short_name(value: str) -> str:
    """``/yamux/1.0.0`` -> ``yamux``; ``/noise`` -> ``noise``; empty -> unknown."""
    parts = [part for part in value.strip().split("/") if part]
    if not parts:
        return UNKNOWN
    return parts[0].lower()
