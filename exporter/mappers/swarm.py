"""Swarm: connections, peers and peer churn, with go-libp2p's metric and label names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.model.families import Scoped
from exporter.model.histogram import (
    AGE_BUCKETS,
    CONNECTION_DURATION_BUCKETS,
    HANDSHAKE_LATENCY_BUCKETS,
    LATENCY_BUCKETS,
    Histogram,
)
from exporter.model.snapshot import STATUS_NAMES, ConnView
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState, SnapshotUpdate

CONN_LABELS = ("dir", "transport", "security", "muxer", "ip_version")
HANDSHAKE_LABELS = ("transport", "security", "muxer")


@dataclass
class SwarmAcc:
    opened: Counter[tuple[str, ...]] = field(default_factory=Counter)
    closed: Counter[tuple[str, ...]] = field(default_factory=Counter)
    duration: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    handshake: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    peers_connected: int = 0
    peers_disconnected: int = 0
    labels: dict[bytes, tuple[str, ...]] = field(default_factory=dict)  # conn id -> bounded labels


class Swarm(Mapper):
    name = "swarm"

    def new_accumulator(self) -> SwarmAcc:
        return SwarmAcc()

    def _labels(self, c: ConnView) -> tuple[str, ...]:
        card = self.card
        return (c.dir, card.transport(c.transport), card.security(c.security), card.muxer(c.muxer), c.ip_version)

    def on_snapshot(self, acc: SwarmAcc, update: SnapshotUpdate) -> None:
        diff = update.diff
        for c in diff.opened_conns:
            labels = self._labels(c)
            acc.labels[c.id] = labels
            acc.opened[labels] += 1
            if c.open_ts and c.upgraded_ts >= c.open_ts:
                key = labels[1:4]
                hist = acc.handshake.get(key) or acc.handshake.setdefault(key, Histogram(HANDSHAKE_LATENCY_BUCKETS))
                hist.observe((c.upgraded_ts - c.open_ts) / 1000.0)
        for ended in diff.closed_conns:
            c = ended.view
            labels = acc.labels.pop(c.id, None) or self._labels(c)
            acc.closed[labels] += 1
            if c.open_ts and ended.end_ms >= c.open_ts:
                hist = acc.duration.get(labels) or acc.duration.setdefault(
                    labels, Histogram(CONNECTION_DURATION_BUCKETS)
                )
                hist.observe((ended.end_ms - c.open_ts) / 1000.0)
        acc.peers_connected += len(diff.peers_joined)
        acc.peers_disconnected += len(diff.peers_left)

    def collect(self, acc: SwarmAcc, node: NodeState, out: Scoped) -> None:
        snap = node.snapshot
        if snap is None:
            return
        current: Counter[tuple[str, ...]] = Counter()
        latency = Histogram(LATENCY_BUCKETS)
        age = Histogram(AGE_BUCKETS)
        now = snap.instant_ts
        for c in snap.conns.values():
            labels = acc.labels.get(c.id) or self._labels(c)
            current[(STATUS_NAMES.get(c.status, "unknown"), *labels[:4])] += 1
            if c.closed:
                continue
            if c.latency_ns:
                latency.observe(c.latency_ns / 1e9)
            if c.open_ts and now >= c.open_ts:
                age.observe((now - c.open_ts) / 1000.0)
        for (status, *rest), n in sorted(current.items()):
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
        for labels, hist in sorted(acc.duration.items()):
            out.histogram(
                "libp2p_swarm_connection_duration_seconds",
                "Lifetime of connections that closed (close_ts or last seen minus open_ts).",
                hist,
                dict(zip(CONN_LABELS, labels)),
            )
        for labels, hist in sorted(acc.handshake.items()):
            out.histogram(
                "libp2p_swarm_handshake_latency_seconds",
                "Time from opening on the wire to security and muxer done (upgraded_ts - open_ts), per new connection.",
                hist,
                dict(zip(HANDSHAKE_LABELS, labels)),
            )
        out.counter(
            "libp2p_peers_connected", "Peers that went from no open connection to at least one.", acc.peers_connected
        )
        out.counter("libp2p_peers_disconnected", "Peers whose last open connection closed.", acc.peers_disconnected)
        out.histogram(
            "libp2p_connection_latency_seconds",
            "Point-in-time distribution of open connections' latency in the latest snapshot (no rate() needed).",
            latency,
            gauge=True,
        )
        out.histogram(
            "libp2p_connection_age_seconds",
            "Point-in-time distribution of open connections' age in the latest snapshot (no rate() needed).",
            age,
            gauge=True,
        )
