"""Traffic: node bytes and packets, bandwidth, and per-protocol / per-transport byte counters.

Per-protocol and per-transport counters add up each stream's (connection's) increase between
snapshots, so bytes of a stream that closes stay counted: its last reported value was already added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.mappers.base import Monotonic
from exporter.model.families import Scoped
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState, SnapshotUpdate

HELP_NODE = (
    "Bytes the node reported in State.traffic, accumulated from the first snapshot seen; "
    "a node restart continues the count instead of resetting it."
)


@dataclass
class TrafficAcc:
    node_bytes: Monotonic = field(default_factory=Monotonic)
    node_packets: Monotonic = field(default_factory=Monotonic)
    by_protocol: Monotonic = field(default_factory=Monotonic)
    by_transport: Monotonic = field(default_factory=Monotonic)


class Traffic(Mapper):
    name = "traffic"

    def new_accumulator(self) -> TrafficAcc:
        return TrafficAcc()

    def on_snapshot(self, acc: TrafficAcc, update: SnapshotUpdate) -> None:
        cur, diff = update.cur, update.diff
        if diff.restart:  # ids may be reused after a restart
            acc.by_protocol.last.clear()
            acc.by_transport.last.clear()
        t = cur.traffic
        if t.present:
            acc.node_bytes.add("in", ("in",), t.bytes_in)
            acc.node_bytes.add("out", ("out",), t.bytes_out)
            acc.node_packets.add("in", ("in",), t.packets_in)
            acc.node_packets.add("out", ("out",), t.packets_out)
        proto, transport = self.card.protocol, self.card.transport
        acc.by_protocol.begin()
        acc.by_transport.begin()
        for c in cur.conns.values():
            if c.traffic.present:
                label = transport(c.transport)
                acc.by_transport.add((c.id, "in"), (label, "in"), c.traffic.bytes_in)
                acc.by_transport.add((c.id, "out"), (label, "out"), c.traffic.bytes_out)
            for s in c.streams.values():
                if s.traffic.present:
                    label = proto(s.protocol)
                    acc.by_protocol.add((s.key, "in"), (label, "in"), s.traffic.bytes_in)
                    acc.by_protocol.add((s.key, "out"), (label, "out"), s.traffic.bytes_out)
        # Streams and connections that left the snapshot are forgotten; their bytes stay counted.
        acc.by_protocol.end()
        acc.by_transport.end()

    def collect(self, acc: TrafficAcc, node: NodeState, out: Scoped) -> None:
        snap = node.snapshot
        for (direction,), n in sorted(acc.node_bytes.totals.items()):
            out.counter("libp2p_traffic_bytes", HELP_NODE, n, {"direction": direction})
        for (direction,), n in sorted(acc.node_packets.totals.items()):
            out.counter("libp2p_traffic_packets", HELP_NODE.replace("Bytes", "Packets"), n, {"direction": direction})
        if snap is not None and snap.traffic.present:
            out.gauge(
                "libp2p_bandwidth_bytes_per_second",
                "Node bandwidth now (inst_bw).",
                snap.traffic.bw_in,
                {"direction": "in"},
            )
            out.gauge(
                "libp2p_bandwidth_bytes_per_second",
                "Node bandwidth now (inst_bw).",
                snap.traffic.bw_out,
                {"direction": "out"},
            )
        for (protocol, direction), n in sorted(acc.by_protocol.totals.items()):
            out.counter(
                "libp2p_protocol_traffic_bytes",
                "Stream bytes by protocol, summed over streams' increases between snapshots; closed streams stay counted.",
                n,
                {"protocol": protocol, "direction": direction},
            )
        for (transport, direction), n in sorted(acc.by_transport.totals.items()):
            out.counter(
                "libp2p_transport_traffic_bytes",
                "Connection bytes by transport, summed over connections' increases between snapshots; closed ones stay counted.",
                n,
                {"transport": transport, "direction": direction},
            )
