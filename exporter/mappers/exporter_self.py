"""The exporter's own view of each node: liveness, freshness and faults. Exported even when stale."""

from __future__ import annotations

from typing import Any

from exporter.model.families import Scoped
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState


class ExporterSelf(Mapper):
    name = "exporter"
    always = True

    def collect(self, acc: Any, node: NodeState, out: Scoped) -> None:
        out.gauge(
            "libp2p_exporter_up",
            "1 when the node's data is current and exported; 0 when its source is down or stale.",
            1.0 if node.fresh() else 0.0,
        )
        if node.snapshot is not None and node.snapshot.instant_ts:
            out.gauge(
                "libp2p_exporter_last_snapshot_timestamp_seconds",
                "When the node took its last accepted State (instant_ts), as a Unix time.",
                node.snapshot.instant_ts / 1000.0,
            )
        out.counter(
            "libp2p_exporter_snapshots",
            "State snapshots accepted for this node.",
            node.messages.get("state", 0) - sum(node.dropped_snapshots.values()),
        )
        for kind, n in sorted(node.messages.items()):
            out.counter("libp2p_exporter_messages", "Server messages decoded, by kind.", n, {"kind": kind})
        out.counters(
            "libp2p_exporter_snapshots_dropped",
            "States ignored because they repeated or preceded the last accepted one.",
            "reason",
            node.dropped_snapshots,
            ("duplicate", "out_of_order"),
        )
        out.counters(
            "libp2p_exporter_segment_errors",
            "Segments skipped, by reason: checksum, truncated, oversized (over the cap), version, protobuf.",
            "reason",
            node.segment_errors,
            ("checksum", "truncated", "oversized", "protobuf", "version"),
        )
        out.counter("libp2p_exporter_command_errors", "CommandResponse ERR answers from the node.", node.command_errors)
        out.counter(
            "libp2p_exporter_node_restarts",
            "Node restarts detected (new peer id, or cumulative traffic going back).",
            node.restarts,
        )
        for kind, n in sorted(node.notices.items()):
            out.counter("libp2p_exporter_notices", "ServerNotice messages received, by kind.", n, {"kind": kind})
