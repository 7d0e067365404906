"""Per-target session metrics of live sources: connection state, reconnects, failures, drops.

Live sessions register this subsystem on the hub they feed (``attach``); replayed files never do,
so a replay-only hub exports none of it. It is exported even when the node's data is stale, which
is when it matters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exporter.families import Scoped
from exporter.node import Hub, NodeState
from exporter.subsystems.base import Subsystem

if TYPE_CHECKING:
    from exporter.sources.websocket import SessionStats

NAME = "session"


class SessionMetrics(Subsystem):
    name = NAME
    always = True

    def new_accumulator(self) -> Any:
        return None  # a live session puts its SessionStats here

    def collect(self, acc: Any, node: NodeState, out: Scoped) -> None:
        if acc is None:
            return
        from exporter.sources.websocket import STATES

        stats: SessionStats = acc
        for state in STATES:
            out.gauge(
                "libp2p_exporter_session_state",
                "The live session's state (1 for the current one): idle, connecting, handshaking, streaming, backoff, closed.",
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
            "Sessions that ended, by reason: connect, closed, hello_refused, stalled, timeout, heartbeat, frame, error.",
            "reason",
            stats.failures,
            ("connect", "closed", "hello_refused", "stalled", "timeout"),
        )
        out.counters(
            "libp2p_exporter_session_dropped_messages",
            "Messages dropped because the per-target buffer was full, by kind.",
            "kind",
            stats.dropped,
            ("event", "state"),
        )
        for kind in ("binary", "text"):
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


def attach(hub: Hub, node: NodeState, stats: SessionStats) -> None:
    """Make sure ``hub`` has the session subsystem (every node gets an accumulator) and wire ``stats``."""
    with hub._lock:
        if not any(s.name == NAME for s in hub.subsystems):
            for other in hub.nodes.values():
                other.accs.setdefault(NAME, None)
            hub.subsystems.append(SessionMetrics(hub.cardinality))
    with node.lock:
        node.accs[NAME] = stats
