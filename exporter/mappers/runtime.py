"""Runtime: who the node is (implementation, version, platform) and its introspection settings."""

from __future__ import annotations

from typing import Any

from exporter.model.families import Scoped
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState


class Runtime(Mapper):
    name = "runtime"

    def collect(self, acc: Any, node: NodeState, out: Scoped) -> None:
        rt = node.runtime
        if rt is not None:
            out.info(
                "libp2p_node",
                "The observed node's implementation, version, platform and its own peer id (one series per node).",
                {
                    "implementation": rt.implementation or "unknown",
                    "version": rt.version or "unknown",
                    "platform": rt.platform or "unknown",
                    "peer_id": rt.peer_id or "unknown",
                },
            )
        snap = node.snapshot
        if snap is not None and snap.duration_ms:
            out.gauge(
                "libp2p_introspection_snapshot_duration_seconds",
                "The period the node's last State covers (snapshot_duration_ms): the time since its previous State.",
                snap.duration_ms / 1000.0,
            )
        cfg = node.config
        if cfg is not None:
            out.gauge(
                "libp2p_introspection_interval_seconds",
                "State push interval the node agreed to (effective_config).",
                cfg.state_snapshot_interval_ms / 1000.0,
            )
            out.gauge(
                "libp2p_introspection_retention_seconds",
                "How long the node keeps closed connections and queued data (effective_config).",
                cfg.retention_period_ms / 1000.0,
            )
