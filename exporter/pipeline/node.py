"""Everything the exporter knows about one observed node, and what one accepted State changed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from exporter.model.snapshot import Snapshot
from exporter.pipeline.diff import Diff, Tracker
from exporter.pipeline.exemplars import ExportedSpans
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
    last_step: StateStep | None = None  # the latest accepted State, as the lean pass read it
    lean: LeanTracker = field(kw_only=True)  # given by the hub (it knows the label caps)
    # Views and their diff, built only while a listener (a push sink such as tracing) wants them.
    tracker: Tracker = field(default_factory=Tracker)
    last_snapshot: Snapshot | None = None  # the latest accepted State as views (listeners only)
    accs: dict[str, Any] = field(default_factory=dict)  # each mapper's accumulator, by mapper name
    messages: Counter[str] = field(default_factory=Counter)
    segment_errors: Counter[str] = field(default_factory=Counter)
    dropped_snapshots: Counter[str] = field(default_factory=Counter)
    command_errors: int = 0
    notices: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    # States accepted more than the node's retention after the previous accepted one: what opened and
    # closed in between was never listed to us, so the counters may miss it (issue 20: counts exact).
    retention_gaps: int = 0
    last_snapshot_wall: float | None = None
    # When the source last saw a State of this node arrive (wall clock), ingested yet or not: a node
    # whose States wait in the exporter's own queue is behind in the exporter, not stale.
    last_state_arrived_wall: float | None = None
    # Sources that know more (a live session) override these; replayed files are always up.
    up: bool = True
    _stale_after_s: float | None = None
    _session: SessionStats | None = None  # set by a live source; exported by the session mapper
    pending_restart: bool = False
    hidden: bool = False  # reached through /probe only: never on /metrics
    rewound: bool = False  # a looped replay starts its file again: a restart of counters, not of the node
    older_in_a_row: int = 0  # States older than the last accepted one, back to back
    # With tracing on: which connections, streams and queries have an exported span (exemplars).
    spans: ExportedSpans | None = None
    # Moves whenever anything the node exports changes (``touch``): every message, segment error and
    # new mapper (the hub), its live session's fields and staleness window (the source, through the
    # properties below), its freshness (noticed by ``current_version``). A sink keeps what it
    # rendered from the node until the number moves; nothing else goes into its cache key.
    version: int = 0
    _exported_fresh: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)

    def touch(self) -> None:
        """Something the node exports changed."""
        self.version += 1

    def current_version(self, now: float | None = None) -> int:
        """``version``, moved first if the node went fresh or stale since it was last asked."""
        fresh = self.fresh(now)
        if fresh != self._exported_fresh:
            self._exported_fresh = fresh
            self.version += 1
        return self.version

    @property
    def stale_after_s(self) -> float | None:
        """No State for this long and the node's data stops being exported (None: never)."""
        return self._stale_after_s

    @stale_after_s.setter
    def stale_after_s(self, value: float | None) -> None:
        if value != self._stale_after_s:
            self._stale_after_s = value
            self.touch()

    @property
    def session(self) -> SessionStats | None:
        """The live session's stats; each change the source makes to them moves the node's version."""
        return self._session

    @session.setter
    def session(self, stats: SessionStats | None) -> None:
        if self._session is not None:
            self._session.on_change = None
        self._session = stats
        if stats is not None:
            stats.on_change = self.touch
        self.touch()

    @property
    def base_labels(self) -> dict[str, str]:
        return {**self.labels, "node": self.name}

    def fresh(self, now: float | None = None) -> bool:
        """Whether the node's data may be exported: up, seen, and not stale."""
        if not self.up or self.last_step is None:
            return False
        if self.stale_after_s is None or self.last_snapshot_wall is None:
            return True
        seen = max(self.last_snapshot_wall, self.last_state_arrived_wall or 0.0)
        return (now if now is not None else time.time()) - seen <= self.stale_after_s
