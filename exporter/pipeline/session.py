"""What a live source reports about its session with one node, for the session mapper to export.

It sits in the pipeline so that the source writing it and the mapper reading it share a definition
without importing each other; the label values each metric may take are listed here once, and the
metrics' HELP texts are derived from these tuples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

SESSION_STATES = ("idle", "connecting", "handshaking", "streaming", "backoff", "closed")
# Why a session ended (the reasons the live source raises).
SESSION_FAILURES = ("connect", "closed", "hello_refused", "stalled", "timeout", "heartbeat", "frame", "error")


@dataclass
class SessionStats:
    """One session's state and counters; the live source writes them, scrapes read them."""

    url: str = ""
    state: str = "idle"
    connects: int = 0  # connection attempts
    reconnects: int = 0  # attempts after the first
    established: int = 0  # sessions that got a HELLO OK
    failures: Counter[str] = field(default_factory=Counter)  # why sessions ended
    dropped: Counter[str] = field(default_factory=Counter)  # messages dropped by the bounded buffer
    frames: Counter[str] = field(default_factory=Counter)  # binary / text frames received
    effective_interval_ms: int = 0
    effective_retention_ms: int = 0
    connected_since: float | None = None
    last_error: str = ""
    queue_depth: int = 0
    queue_high_water: int = 0

    def fingerprint(self) -> tuple[object, ...]:
        """Everything above as one comparable value: a sink re-renders the node when it moves.

        The source writes these fields outside the hub, so no version counter sees them change.
        """
        return (
            self.url,
            self.state,
            self.connects,
            self.reconnects,
            self.established,
            tuple(self.failures.items()),
            tuple(self.dropped.items()),
            tuple(self.frames.items()),
            self.effective_interval_ms,
            self.effective_retention_ms,
            self.connected_since,
            self.last_error,
            self.queue_depth,
            self.queue_high_water,
        )
