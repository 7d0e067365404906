"""The exporter's own view of each node: liveness, freshness and faults. Exported even when stale."""

from __future__ import annotations

from typing import Any

from exporter.model.catalogue import Family, Writer
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

UP = Family(
    "libp2p_exporter_up",
    "gauge",
    "1 when the node's data is current and exported; 0 when its source is down or stale.",
)
LAST_SNAPSHOT = Family(
    "libp2p_exporter_last_snapshot_timestamp_seconds",
    "gauge",
    "When the node took its last accepted State (instant_ts), as a Unix time.",
)
SNAPSHOTS = Family("libp2p_exporter_snapshots", "counter", "State snapshots accepted for this node.")
MESSAGES = Family("libp2p_exporter_messages", "counter", "Server messages decoded, by kind.", ("kind",))
SNAPSHOTS_DROPPED = Family(
    "libp2p_exporter_snapshots_dropped",
    "counter",
    "States ignored because they repeated or preceded the last accepted one.",
    ("reason",),
)
SEGMENT_ERRORS = Family(
    "libp2p_exporter_segment_errors",
    "counter",
    "Segments skipped, by reason: checksum, truncated, oversized (over the cap), version, protobuf.",
    ("reason",),
)
COMMAND_ERRORS = Family("libp2p_exporter_command_errors", "counter", "CommandResponse ERR answers from the node.")
RESTARTS = Family(
    "libp2p_exporter_node_restarts",
    "counter",
    "Node restarts detected (new peer id, or cumulative traffic going back).",
)
RETENTION_GAPS = Family(
    "libp2p_exporter_retention_gaps",
    "counter",
    "States accepted more than the node's retention period after the previous one: connections and streams "
    "that opened and closed in between were never listed, so the node's counters may miss them.",
)
NOTICES = Family("libp2p_exporter_notices", "counter", "ServerNotice messages received, by kind.", ("kind",))


class ExporterSelf(Mapper):
    name = "exporter"
    always = True

    def collect(self, acc: Any, node: NodeState, out: Writer) -> None:
        out.gauge(UP, 1.0 if node.fresh() else 0.0)
        step = node.last_step
        if step is not None and step.instant_ts:
            out.gauge(LAST_SNAPSHOT, step.instant_ts / 1000.0)
        out.counter(SNAPSHOTS, node.messages.get("state", 0) - sum(node.dropped_snapshots.values()))
        for kind, n in sorted(node.messages.items()):
            out.counter(MESSAGES, n, {"kind": kind})
        out.counters(SNAPSHOTS_DROPPED, "reason", node.dropped_snapshots, ("duplicate", "out_of_order"))
        out.counters(
            SEGMENT_ERRORS, "reason", node.segment_errors, ("checksum", "truncated", "oversized", "protobuf", "version")
        )
        out.counter(COMMAND_ERRORS, node.command_errors)
        out.counter(RESTARTS, node.restarts)
        out.counter(RETENTION_GAPS, node.retention_gaps)
        for kind, n in sorted(node.notices.items()):
            out.counter(NOTICES, n, {"kind": kind})
