"""Swarm: connections, peers and peer churn, with go-libp2p's metric and label names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.model.families import Scoped
from exporter.model.histogram import Histogram
from exporter.model.histogram_profiles import (
    CONN_LABELS,
    CONNECTION_AGE,
    CONNECTION_DURATION,
    CONNECTION_LATENCY,
    HANDSHAKE_LATENCY,
)
from exporter.model.labels import Cardinality
from exporter.pipeline.lean import StateStep
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState


@dataclass
class SwarmAcc:
    opened: Counter[tuple[str, ...]] = field(default_factory=Counter)
    closed: Counter[tuple[str, ...]] = field(default_factory=Counter)
    duration: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    handshake: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
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
        for labels, handshake_s in step.opened:
            acc.opened[labels] += 1
            if handshake_s is not None:
                key = self.handshake.key(labels[1:4])
                hist = acc.handshake.get(key) or acc.handshake.setdefault(key, self.handshake.new())
                hist.observe(handshake_s)
        for labels, lifetime_s in step.closed:
            acc.closed[labels] += 1
            if lifetime_s is not None:
                key = self.duration.key(labels)
                hist = acc.duration.get(key) or acc.duration.setdefault(key, self.duration.new())
                hist.observe(lifetime_s)
        acc.peers_connected += step.joined
        acc.peers_disconnected += step.left

    def collect(self, acc: SwarmAcc, node: NodeState, out: Scoped) -> None:
        snap = node.snapshot
        if snap is None:
            return
        latency = self.latency.new()
        for value in snap.latencies:
            latency.observe(value)
        age = self.age.new()
        for value in snap.ages:
            age.observe(value)
        for (status, *rest), n in sorted(snap.conn_status.items()):
            out.gauge(
                "libp2p_connections",
                "Connections in the node's latest snapshot, by status; closed ones stay listed for the node's retention period.",
                n,
                {"status": status, **dict(zip(("dir", "transport", "security", "muxer"), rest))},
            )
        out.gauge(
            "libp2p_peers", "Distinct peers with at least one open connection in the latest snapshot.", len(snap.peers)
        )
        for name, counter, what in (
            ("libp2p_swarm_connections_opened", acc.opened, "opened (or open when the exporter first saw the node)"),
            (
                "libp2p_swarm_connections_closed",
                acc.closed,
                "closed (status CLOSED/ERROR, close_ts set, or vanished; once each)",
            ),
        ):
            for labels, n in sorted(counter.items()):
                out.counter(
                    name,
                    f"Connections {what}, counted since the exporter started watching.",
                    n,
                    dict(zip(CONN_LABELS, labels)),
                )
        for key, hist in sorted(acc.duration.items()):
            out.histogram(
                CONNECTION_DURATION,
                "Lifetime of connections that closed (close_ts or last seen minus open_ts).",
                hist,
                self.duration.label_dict(key),
            )
        for key, hist in sorted(acc.handshake.items()):
            out.histogram(
                HANDSHAKE_LATENCY,
                "Time from opening on the wire to security and muxer done (upgraded_ts - open_ts), per new connection.",
                hist,
                self.handshake.label_dict(key),
            )
        out.counter(
            "libp2p_peers_connected", "Peers that went from no open connection to at least one.", acc.peers_connected
        )
        out.counter("libp2p_peers_disconnected", "Peers whose last open connection closed.", acc.peers_disconnected)
        out.histogram(
            CONNECTION_LATENCY,
            "Point-in-time distribution of open connections' latency in the latest snapshot (no rate() needed).",
            latency,
            gauge=True,
        )
        out.histogram(
            CONNECTION_AGE,
            "Point-in-time distribution of open connections' age in the latest snapshot (no rate() needed).",
            age,
            gauge=True,
        )
