"""Per-target session metrics of live sources: connection state, reconnects, failures, drops.

The application adds this mapper to hubs that live sources feed; a live source puts its
``SessionStats`` on the node (``NodeState.session``). Replayed files have none, so a replay-only
hub exports none of it. It is exported even when the node's data is stale, which is when it matters.
"""

from __future__ import annotations

from typing import Any

from exporter.model.families import Scoped
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState
from exporter.pipeline.session import SESSION_FAILURES, SESSION_STATES

DROPPED_KINDS = ("event", "state")
FRAME_TYPES = ("binary", "text")


class SessionMetrics(Mapper):
    name = "session"
    always = True

    def collect(self, acc: Any, node: NodeState, out: Scoped) -> None:
        stats = node.session
        if stats is None:
            return
        for state in SESSION_STATES:
            out.gauge(
                "libp2p_exporter_session_state",
                f"The live session's state (1 for the current one): {', '.join(SESSION_STATES)}.",
                1.0 if stats.state == state else 0.0,
                {"state": state},
            )
        out.counter(
            "libp2p_exporter_session_reconnects",
            "Connection attempts after the first one (each follows a lost or failed session).",
            stats.reconnects,
        )
        out.counter("libp2p_exporter_session_established", "Sessions that got a HELLO OK.", stats.established)
        out.counters(
            "libp2p_exporter_session_failures",
            f"Sessions that ended, by reason: {', '.join(SESSION_FAILURES)}.",
            "reason",
            stats.failures,
            SESSION_FAILURES,
        )
        out.counters(
            "libp2p_exporter_session_dropped_messages",
            "Messages dropped because the per-target buffer was full, by kind.",
            "kind",
            stats.dropped,
            DROPPED_KINDS,
        )
        for kind in FRAME_TYPES:
            out.counter(
                "libp2p_exporter_session_frames",
                "WebSocket data frames received, by frame type.",
                stats.frames.get(kind, 0),
                {"type": kind},
            )
        if stats.effective_interval_ms:
            out.gauge(
                "libp2p_exporter_session_interval_seconds",
                "The snapshot interval the node agreed to (HELLO effective_config).",
                stats.effective_interval_ms / 1000.0,
            )
        out.gauge("libp2p_exporter_session_queue_depth", "Messages waiting for the pipeline.", stats.queue_depth)
        if node.stale_after_s is not None:
            out.gauge(
                "libp2p_exporter_session_stale_after_seconds",
                "No State for this long and the node's data stops being exported.",
                node.stale_after_s,
            )
