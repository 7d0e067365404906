"""Peerstore (this project's schema extension): how much the node knows, and who its peers are.

Everything here comes from ``Subsystems.peerstore`` (field 100); a State without it exports nothing,
so captures of the 2020 schema read exactly as before. Protocol ids and agents are label values a
remote peer chose: they pass the process-wide guards (``model/labels.py``); peer ids never appear.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.mappers.base import Monotonic
from exporter.model.catalogue import Family, Writer
from exporter.model.histogram import Histogram
from exporter.model.labels import OTHER
from exporter.model.snapshot import ADDRS_PER_PEER_BOUNDS, LATENCY_EWMA_BOUNDS, PeerStoreView
from exporter.pipeline.lean import StateStep
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

ADDRESSES_PER_PEER = Family(
    "libp2p_peerstore_addresses_per_peer",
    "gaugehistogram",
    "Point-in-time distribution of known peers by number of unexpired addresses (sum: all addresses).",
)
LATENCY_EWMA = Family(
    "libp2p_peerstore_latency_ewma_seconds",
    "gaugehistogram",
    "Point-in-time distribution of known peers' latency EWMA (peers with a measured latency only).",
)
PROTOCOL_PEERS = Family(
    "libp2p_peerstore_protocol_peers",
    "gauge",
    "Known peers per protocol they support (other: peer-protocol pairs past the lists and caps).",
    ("protocol",),
)
AGENT_PEERS = Family(
    "libp2p_peerstore_agent_peers",
    "gauge",
    "Known peers per agent (implementation or client, as identify reported it) and major.minor version.",
    ("agent", "version"),
)
MAX_PEERS = Family("libp2p_peerstore_max_peers", "gauge", "The peerstore's limit on known peers.")
MAX_RECORDS = Family("libp2p_peerstore_max_records", "gauge", "The peerstore's limit on signed peer records.")
EVICTIONS = Family(
    "libp2p_peerstore_evictions",
    "counter",
    "Peers the peerstore evicted to stay within its limit, accumulated from the first snapshot seen.",
)
PEERS = Family(
    "libp2p_peerstore_peers",
    "gauge",
    "Peers in the peerstore: all known ones, and those with addresses, a key, a signed record, protocols.",
    ("kind",),
)


@dataclass
class PeerStoreAcc:
    # Label values of the latest snapshot, already bounded (several raw names may fold into one).
    protocols: Counter[str] = field(default_factory=Counter)
    agents: Counter[tuple[str, str]] = field(default_factory=Counter)
    evictions: Monotonic = field(default_factory=Monotonic)
    evictions_seen: bool = False


def _histogram(bounds: tuple[float, ...], counts: list[int], total: float) -> Histogram:
    """A point-in-time histogram from per-bucket counts the producer measured."""
    hist = Histogram(bounds)
    hist.counts = list(counts)
    hist.count = sum(counts)
    hist.total = total
    return hist


class PeerStore(Mapper):
    name = "peerstore"

    def new_accumulator(self) -> PeerStoreAcc:
        return PeerStoreAcc()

    def on_state(self, acc: PeerStoreAcc, step: StateStep) -> None:
        ps = step.peerstore
        acc.protocols.clear()
        acc.agents.clear()
        if ps is None:
            return
        for name, peers in ps.protocols:
            acc.protocols[self.card.protocol(name)] += peers
        if ps.protocols_other:
            acc.protocols[OTHER] += ps.protocols_other
        for raw, peers in ps.agents:
            acc.agents[self.card.agent_labels(raw)] += peers
        if ps.agents_other:
            acc.agents[(OTHER, OTHER)] += ps.agents_other
        if ps.evicted is not None:
            acc.evictions.add("node", (), ps.evicted)
            acc.evictions_seen = True

    def collect(self, acc: PeerStoreAcc, node: NodeState, out: Writer) -> None:
        snap = node.last_step
        ps = snap.peerstore if snap is not None else None
        if ps is None:
            return
        self._counts(ps, out)
        if ps.addrs_per_peer:
            out.histogram(
                ADDRESSES_PER_PEER, _histogram(ADDRS_PER_PEER_BOUNDS, ps.addrs_per_peer, float(ps.addrs_total))
            )
        if ps.latency_ewma and ps.latency_ewma_sum is not None:
            out.histogram(LATENCY_EWMA, _histogram(LATENCY_EWMA_BOUNDS, ps.latency_ewma, ps.latency_ewma_sum))
        for protocol, n in sorted(acc.protocols.items()):
            out.gauge(PROTOCOL_PEERS, n, {"protocol": protocol})
        for (agent, version), n in sorted(acc.agents.items()):
            out.gauge(AGENT_PEERS, n, {"agent": agent, "version": version})
        if ps.max_peers is not None:
            out.gauge(MAX_PEERS, ps.max_peers)
        if ps.max_records is not None:
            out.gauge(MAX_RECORDS, ps.max_records)
        if acc.evictions_seen:
            out.counter(EVICTIONS, acc.evictions.totals.get((), 0))

    @staticmethod
    def _counts(ps: PeerStoreView, out: Writer) -> None:
        for kind, value in (
            ("known", ps.known),
            ("with_addrs", ps.with_addrs),
            ("with_keys", ps.with_keys),
            ("with_records", ps.with_records),
            ("with_protocols", ps.with_protocols),
        ):
            if value is not None:
                out.gauge(PEERS, value, {"kind": kind})
