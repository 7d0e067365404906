"""Runtime: who the node is (implementation, version, platform) and its introspection settings."""

from __future__ import annotations

from typing import Any

from exporter.model.catalogue import Family, Writer
from exporter.model.text import clean_label
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

NODE_INFO = Family(
    "libp2p_node_info",
    "gauge",
    "The observed node's implementation, version, platform and its own peer id (one series per node).",
    ("implementation", "version", "platform", "peer_id"),
)
SNAPSHOT_DURATION = Family(
    "libp2p_introspection_snapshot_duration_seconds",
    "gauge",
    "The period the node's last State covers (snapshot_duration_ms): the time since its previous State.",
)
INTERVAL = Family(
    "libp2p_introspection_interval_seconds", "gauge", "State push interval the node agreed to (effective_config)."
)
RETENTION = Family(
    "libp2p_introspection_retention_seconds",
    "gauge",
    "How long the node keeps closed connections and queued data (effective_config).",
)


class Runtime(Mapper):
    name = "runtime"

    def collect(self, acc: Any, node: NodeState, out: Writer) -> None:
        rt = node.runtime
        if rt is not None:
            out.info(
                NODE_INFO,
                {  # remote strings: capped and made printable (a node sent a 100,118-character one)
                    "implementation": clean_label(rt.implementation) or "unknown",
                    "version": clean_label(rt.version) or "unknown",
                    "platform": clean_label(rt.platform) or "unknown",
                    "peer_id": clean_label(rt.peer_id) or "unknown",
                },
            )
        snap = node.last_step
        if snap is not None and snap.duration_ms:
            out.gauge(SNAPSHOT_DURATION, snap.duration_ms / 1000.0)
        cfg = node.config
        if cfg is not None:
            out.gauge(INTERVAL, cfg.state_snapshot_interval_ms / 1000.0)
            out.gauge(RETENTION, cfg.retention_period_ms / 1000.0)
