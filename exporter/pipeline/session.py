"""What a live source reports about its session with one node, for the session mapper to export.

It sits in the pipeline so that the source writing it and the mapper reading it share a definition
without importing each other; the label values each metric may take are listed here once, and the
metrics' HELP texts are derived from these tuples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SESSION_STATES = ("idle", "connecting", "handshaking", "streaming", "backoff", "closed")
# Why a session ended (the reasons the live source raises).
SESSION_FAILURES = ("connect", "closed", "hello_refused", "stalled", "timeout", "heartbeat", "frame", "error")


class _Counts(Counter[str]):
    """A Counter that tells its session when a count changes."""

    owner: SessionStats | None = None

    def __setitem__(self, key: str, value: int) -> None:
        super().__setitem__(key, value)
        if self.owner is not None:
            self.owner.changed()


@dataclass
class SessionStats:
    """One session's state and counters; the live source writes them, scrapes read them.

    Every assignment to a field (and every count) calls ``on_change``: the node it is attached to
    moves its version, so a sink renders the node again (``NodeState.session``).
    """

    on_change: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    url: str = ""
    state: str = "idle"
    connects: int = 0  # connection attempts
    reconnects: int = 0  # attempts after the first
    established: int = 0  # sessions that got a HELLO OK
    failures: Counter[str] = field(default_factory=_Counts)  # why sessions ended
    dropped: Counter[str] = field(default_factory=_Counts)  # messages dropped by the bounded buffer
    frames: Counter[str] = field(default_factory=_Counts)  # binary / text frames received
    effective_interval_ms: int = 0
    effective_retention_ms: int = 0
    connected_since: float | None = None
    last_error: str = ""
    queue_depth: int = 0
    queue_high_water: int = 0
    recording: bool = False  # recording was asked for this node
    recording_failures: int = 0  # recorders that failed (each one stops recording, never watching)

    def __post_init__(self) -> None:
        for counts in (self.failures, self.dropped, self.frames):
            if isinstance(counts, _Counts):
                counts.owner = self

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "on_change":
            self.changed()

    def changed(self) -> None:
        on_change = getattr(self, "on_change", None)  # None while the dataclass is being built
        if on_change is not None:
            on_change()
