"""Swarm: connections, peers and peer churn, with go-libp2p's metric and label names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.model.catalogue import Family, Writer
from exporter.model.histogram import Histogram
from exporter.model.histogram_profiles import (
    CONN_LABELS,
    CONNECTION_AGE,
    CONNECTION_DURATION,
    CONNECTION_LATENCY,
    HANDSHAKE_LABELS,
    HANDSHAKE_LATENCY,
)
from exporter.model.labels import Cardinality
from exporter.pipeline.exemplars import Recent, attach
from exporter.pipeline.lean import StateStep
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

CONNECTIONS = Family(
    "libp2p_connections",
    "gauge",
    "Connections in the node's latest snapshot, by status; closed ones stay listed for the node's retention period.",
    ("status", "dir", "transport", "security", "muxer"),
)
PEERS = Family("libp2p_peers", "gauge", "Distinct peers with at least one open connection in the latest snapshot.")
OPENED = Family(
    "libp2p_swarm_connections_opened",
    "counter",
    "Connections opened (or open when the exporter first saw the node), counted since the exporter started watching.",
    CONN_LABELS,
)
CLOSED = Family(
    "libp2p_swarm_connections_closed",
    "counter",
    "Connections closed (status CLOSED/ERROR, close_ts set, or vanished; once each), counted since the exporter "
    "started watching.",
    CONN_LABELS,
)
DURATION = Family(
    CONNECTION_DURATION,
    "histogram",
    "Lifetime of connections that closed (close_ts or last seen minus open_ts).",
    CONN_LABELS,
)
HANDSHAKE = Family(
    HANDSHAKE_LATENCY,
    "histogram",
    "Time from opening on the wire to security and muxer done (upgraded_ts - open_ts), per new connection.",
    HANDSHAKE_LABELS,
)
PEERS_CONNECTED = Family(
    "libp2p_peers_connected", "counter", "Peers that went from no open connection to at least one."
)
PEERS_DISCONNECTED = Family("libp2p_peers_disconnected", "counter", "Peers whose last open connection closed.")
LATENCY = Family(
    CONNECTION_LATENCY,
    "gaugehistogram",
    "Point-in-time distribution of open connections' latency in the latest snapshot (no rate() needed).",
)
AGE = Family(
    CONNECTION_AGE,
    "gaugehistogram",
    "Point-in-time distribution of open connections' age in the latest snapshot (no rate() needed).",
)


@dataclass
class SwarmAcc:
    opened: Counter[tuple[str, ...]] = field(default_factory=Counter)
    closed: Counter[tuple[str, ...]] = field(default_factory=Counter)
    duration: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    handshake: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    # The last observations per combination, for exemplars (exporter.pipeline.exemplars).
    duration_recent: dict[tuple[str, ...], Recent] = field(default_factory=dict)
    handshake_recent: dict[tuple[str, ...], Recent] = field(default_factory=dict)
    peers_connected: int = 0
    peers_disconnected: int = 0


class Swarm(Mapper):
    name = "swarm"

    def __init__(self, cardinality: Cardinality) -> None:
        super().__init__(cardinality)
        profile = cardinality.histograms
        self.duration = profile.layout(CONNECTION_DURATION)
        self.handshake = profile.layout(HANDSHAKE_LATENCY)
        self.latency = profile.layout(CONNECTION_LATENCY)
        self.age = profile.layout(CONNECTION_AGE)

    def new_accumulator(self) -> SwarmAcc:
        return SwarmAcc()

    def on_state(self, acc: SwarmAcc, step: StateStep) -> None:
        ts = step.instant_ts / 1000.0
        for (labels, handshake_s), conn_id in zip(step.opened, step.opened_ids):
            acc.opened[labels] += 1
            if handshake_s is not None:
                key = self.handshake.key(labels[1:4])
                hist = acc.handshake.get(key) or acc.handshake.setdefault(key, self.handshake.new())
                hist.observe(handshake_s)
                if step.exemplars:
                    recent = acc.handshake_recent.get(key) or acc.handshake_recent.setdefault(key, Recent())
                    recent.add(handshake_s, "connection", conn_id, ts)
        for (labels, lifetime_s), conn_id in zip(step.closed, step.closed_ids):
            acc.closed[labels] += 1
            if lifetime_s is not None:
                key = self.duration.key(labels)
                hist = acc.duration.get(key) or acc.duration.setdefault(key, self.duration.new())
                hist.observe(lifetime_s)
                if step.exemplars:
                    recent = acc.duration_recent.get(key) or acc.duration_recent.setdefault(key, Recent())
                    recent.add(lifetime_s, "connection", conn_id, ts)
        acc.peers_connected += step.joined
        acc.peers_disconnected += step.left

    def collect(self, acc: SwarmAcc, node: NodeState, out: Writer) -> None:
        snap = node.last_step
        if snap is None:
            return
        latency = self.latency.new().observe_many(snap.latencies)
        age = self.age.new().observe_many(snap.ages)
        for status_key, n in sorted(snap.conn_status.items()):  # status, then the first four CONN_LABELS
            out.gauge(CONNECTIONS, n, dict(zip(CONNECTIONS.labels, status_key)))
        out.gauge(PEERS, len(snap.peers))
        for family, counter in ((OPENED, acc.opened), (CLOSED, acc.closed)):
            for labels, n in sorted(counter.items()):
                out.counter(family, n, dict(zip(CONN_LABELS, labels)))
        if node.spans is not None:
            attach(acc.duration, acc.duration_recent, node.spans)
            attach(acc.handshake, acc.handshake_recent, node.spans)
        for key, hist in sorted(acc.duration.items()):
            out.histogram(DURATION, hist, self.duration.label_dict(key))
        for key, hist in sorted(acc.handshake.items()):
            out.histogram(HANDSHAKE, hist, self.handshake.label_dict(key))
        out.counter(PEERS_CONNECTED, acc.peers_connected)
        out.counter(PEERS_DISCONNECTED, acc.peers_disconnected)
        out.histogram(LATENCY, latency)
        out.histogram(AGE, age)
