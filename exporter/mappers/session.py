"""Per-target session metrics of live sources: connection state, reconnects, failures, drops.

The application adds this mapper to hubs that live sources feed; a live source puts its
``SessionStats`` on the node (``NodeState.session``). Replayed files have none, so a replay-only
hub exports none of it. It is exported even when the node's data is stale, which is when it matters.
"""

from __future__ import annotations

from typing import Any

from exporter.model.catalogue import Family, Writer
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState
from exporter.pipeline.session import SESSION_FAILURES, SESSION_STATES

DROPPED_KINDS = ("event", "state")
FRAME_TYPES = ("binary", "text")

STATE = Family(
    "libp2p_exporter_session_state",
    "gauge",
    f"The live session's state (1 for the current one): {', '.join(SESSION_STATES)}.",
    ("state",),
)
RECONNECTS = Family(
    "libp2p_exporter_session_reconnects",
    "counter",
    "Connection attempts after the first one (each follows a lost or failed session).",
)
ESTABLISHED = Family("libp2p_exporter_session_established", "counter", "Sessions that got a HELLO OK.")
FAILURES = Family(
    "libp2p_exporter_session_failures",
    "counter",
    f"Sessions that ended, by reason: {', '.join(SESSION_FAILURES)}.",
    ("reason",),
)
DROPPED = Family(
    "libp2p_exporter_session_dropped_messages",
    "counter",
    "Messages dropped because the per-target buffer was full, by kind.",
    ("kind",),
)
FRAMES = Family(
    "libp2p_exporter_session_frames", "counter", "WebSocket data frames received, by frame type.", ("type",)
)
INTERVAL = Family(
    "libp2p_exporter_session_interval_seconds",
    "gauge",
    "The snapshot interval the node agreed to (HELLO effective_config).",
)
RECORDING_FAILURES = Family(
    "libp2p_exporter_session_recording_failures",
    "counter",
    "Recorders that failed (a write error, a directory gone); the node is still watched.",
)
QUEUE_DEPTH = Family("libp2p_exporter_session_queue_depth", "gauge", "Messages waiting for the pipeline.")
STALE_AFTER = Family(
    "libp2p_exporter_session_stale_after_seconds",
    "gauge",
    "No State for this long and the node's data stops being exported.",
)


class SessionMetrics(Mapper):
    name = "session"
    always = True

    def collect(self, acc: Any, node: NodeState, out: Writer) -> None:
        stats = node.session
        if stats is None:
            return
        for state in SESSION_STATES:
            out.gauge(STATE, 1.0 if stats.state == state else 0.0, {"state": state})
        out.counter(RECONNECTS, stats.reconnects)
        out.counter(ESTABLISHED, stats.established)
        out.counters(FAILURES, "reason", stats.failures, SESSION_FAILURES)
        out.counters(DROPPED, "kind", stats.dropped, DROPPED_KINDS)
        for kind in FRAME_TYPES:
            out.counter(FRAMES, stats.frames.get(kind, 0), {"type": kind})
        if stats.effective_interval_ms:
            out.gauge(INTERVAL, stats.effective_interval_ms / 1000.0)
        if stats.recording:
            out.counter(RECORDING_FAILURES, stats.recording_failures)
        out.gauge(QUEUE_DEPTH, stats.queue_depth)
        if node.stale_after_s is not None:
            out.gauge(STALE_AFTER, node.stale_after_s)
