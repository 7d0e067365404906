"""Everything the exporter knows about one observed node, and what one accepted State changed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from exporter.model.snapshot import Snapshot
from exporter.pipeline.diff import Diff, Tracker
from exporter.pipeline.lean import LeanTracker, StateStep
from exporter.pipeline.session import SessionStats
from exporter.protocol import introspection_pb2 as pb


@dataclass(slots=True)
class SnapshotUpdate:
    """One accepted State as views, for listeners: the one before it (None for the first), itself, and what changed."""

    prev: Snapshot | None
    cur: Snapshot
    diff: Diff


@dataclass
class NodeState:
    """Everything the exporter knows about one observed node."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    runtime: pb.Runtime | None = None
    config: pb.Configuration | None = None
    snapshot: StateStep | None = None  # the latest accepted State, as the lean pass read it
    lean: LeanTracker = field(kw_only=True)  # given by the hub (it knows the label caps)
    # Views and their diff, built only while a listener (a push sink such as tracing) wants them.
    tracker: Tracker = field(default_factory=Tracker)
    views: Snapshot | None = None
    accs: dict[str, Any] = field(default_factory=dict)  # each mapper's accumulator, by mapper name
    messages: Counter[str] = field(default_factory=Counter)
    segment_errors: Counter[str] = field(default_factory=Counter)
    dropped_snapshots: Counter[str] = field(default_factory=Counter)
    command_errors: int = 0
    notices: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    last_snapshot_wall: float | None = None
    # Sources that know more (a live session) override these; replayed files are always up.
    up: bool = True
    stale_after_s: float | None = None
    session: SessionStats | None = None  # set by a live source; exported by the session mapper
    pending_restart: bool = False
    hidden: bool = False  # reached through /probe only: never on /metrics
    rewound: bool = False  # a looped replay starts its file again: a restart of counters, not of the node
    older_in_a_row: int = 0  # States older than the last accepted one, back to back
    # Bumped under the lock by every change the hub makes (message, segment error, new mapper), so a
    # sink can keep what it rendered from the node until the number moves. Freshness and the live
    # session (written by the source) are not counted here: a sink reads those itself.
    version: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def base_labels(self) -> dict[str, str]:
        return {**self.labels, "node": self.name}

    def fresh(self, now: float | None = None) -> bool:
        """Whether the node's data may be exported: up, seen, and not stale."""
        if not self.up or self.snapshot is None:
            return False
        if self.stale_after_s is None or self.last_snapshot_wall is None:
            return True
        return (now if now is not None else time.time()) - self.last_snapshot_wall <= self.stale_after_s
