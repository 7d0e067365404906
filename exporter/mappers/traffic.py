"""Traffic: node bytes and packets, bandwidth, and per-protocol / per-transport byte counters.

Per-protocol and per-transport counters add up each stream's (connection's) increase between
snapshots, so bytes of a stream that closes stay counted: its last reported value was already added.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.mappers.base import Monotonic
from exporter.model.catalogue import Family, Writer
from exporter.pipeline.lean import StateStep
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

HELP_NODE = (
    "Bytes the node reported in State.traffic, accumulated from the first snapshot seen; "
    "a node restart continues the count instead of resetting it."
)
TRAFFIC_BYTES = Family("libp2p_traffic_bytes", "counter", HELP_NODE, ("direction",))
TRAFFIC_PACKETS = Family("libp2p_traffic_packets", "counter", HELP_NODE.replace("Bytes", "Packets"), ("direction",))
BANDWIDTH = Family("libp2p_bandwidth_bytes_per_second", "gauge", "Node bandwidth now (inst_bw).", ("direction",))
PROTOCOL_BYTES = Family(
    "libp2p_protocol_traffic_bytes",
    "counter",
    "Stream bytes by protocol, summed over streams' increases between snapshots; closed streams stay counted.",
    ("protocol", "direction"),
)
TRANSPORT_BYTES = Family(
    "libp2p_transport_traffic_bytes",
    "counter",
    "Connection bytes by transport, summed over connections' increases between snapshots; closed ones stay counted.",
    ("transport", "direction"),
)


@dataclass
class TrafficAcc:
    node_bytes: Monotonic = field(default_factory=Monotonic)
    node_packets: Monotonic = field(default_factory=Monotonic)
    by_protocol: Counter[tuple[str, str]] = field(default_factory=Counter)  # increases, summed
    by_transport: Counter[tuple[str, str]] = field(default_factory=Counter)


class Traffic(Mapper):
    name = "traffic"

    def new_accumulator(self) -> TrafficAcc:
        return TrafficAcc()

    def on_state(self, acc: TrafficAcc, step: StateStep) -> None:
        t = step.traffic
        if t is not None:  # a direction not measured (an unset DataGauge) is None: no series
            for i, direction in enumerate(("in", "out")):
                nbytes, packets = t[i], t[2 + i]
                if nbytes is not None:
                    acc.node_bytes.add(direction, (direction,), nbytes)
                if packets is not None:
                    acc.node_packets.add(direction, (direction,), packets)
        # The lean pass already turned each stream's (connection's) cumulative bytes into increases.
        acc.by_protocol.update(step.proto_bytes)
        acc.by_transport.update(step.transport_bytes)

    def collect(self, acc: TrafficAcc, node: NodeState, out: Writer) -> None:
        snap = node.last_step
        for (direction,), n in sorted(acc.node_bytes.totals.items()):
            out.counter(TRAFFIC_BYTES, n, {"direction": direction})
        for (direction,), n in sorted(acc.node_packets.totals.items()):
            out.counter(TRAFFIC_PACKETS, n, {"direction": direction})
        if snap is not None and snap.traffic is not None:
            for bw, direction in ((snap.traffic[4], "in"), (snap.traffic[5], "out")):
                if bw is not None:
                    out.gauge(BANDWIDTH, bw, {"direction": direction})
        for (protocol, direction), n in sorted(acc.by_protocol.items()):
            out.counter(PROTOCOL_BYTES, n, {"protocol": protocol, "direction": direction})
        for (transport, direction), n in sorted(acc.by_transport.items()):
            out.counter(TRANSPORT_BYTES, n, {"transport": transport, "direction": direction})
