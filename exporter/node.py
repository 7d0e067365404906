"""Per-node state and the pipeline entry point: messages in, per-subsystem accumulators updated.

Data flows one way: a source hands decoded ServerMessages (and the faults it met) to ``Hub``;
each node turns States into Snapshots and Diffs and passes them to every subsystem in
``exporter.subsystems.SUBSYSTEMS``; the Prometheus sink reads the accumulators at scrape time.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.diff import Diff, Tracker
from exporter.labels import Cardinality
from exporter.model import Snapshot, snapshot_of
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import SegmentError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EventView:
    """One Event with its JSON content parsed (``content`` is None when it did not parse)."""

    type: str
    ts_ms: int
    content: dict[str, Any] | None
    raw: pb.Event


@dataclass(slots=True)
class SnapshotUpdate:
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
    snapshot: Snapshot | None = None
    tracker: Tracker = field(default_factory=Tracker)
    accs: dict[str, Any] = field(default_factory=dict)
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
    pending_restart: bool = False
    older_in_a_row: int = 0  # States older than the last accepted one, back to back
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


# This many States in a row older than the last accepted one mean the node's clock went back.
CLOCK_STEP_AFTER = 3


class Hub:
    """Holds every node and routes messages through the subsystems."""

    def __init__(self, subsystems: Iterable[Any] | None = None, cardinality: Cardinality | None = None) -> None:
        from exporter.subsystems import SUBSYSTEMS

        self.cardinality = cardinality or Cardinality()
        self.subsystems = list(subsystems) if subsystems is not None else [cls(self.cardinality) for cls in SUBSYSTEMS]
        self.nodes: dict[str, NodeState] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[NodeState, pb.ServerMessage, SnapshotUpdate | None], None]] = []
        self.removal_listeners: list[Callable[[str], None]] = []  # e.g. the span sink releasing a node

    def node(self, name: str, labels: dict[str, str] | None = None) -> NodeState:
        with self._lock:
            node = self.nodes.get(name)
            if node is None:
                node = NodeState(name=name, labels=dict(labels or {}))
                node.accs = {s.name: s.new_accumulator() for s in self.subsystems}
                self.nodes[name] = node
            return node

    def remove(self, name: str) -> None:
        with self._lock:
            removed = self.nodes.pop(name, None)
        if removed is not None:
            for listener in self.removal_listeners:
                listener(name)

    def errors(self, name: str, errors: Iterable[SegmentError]) -> None:
        node = self.node(name)
        with node.lock:
            for err in errors:
                node.segment_errors[err.reason] += 1
                log.warning("node %s: skipped segment at %s", name, err)

    def ingest(self, name: str, msg: pb.ServerMessage) -> SnapshotUpdate | None:
        node = self.node(name)
        kind = msg.WhichOneof("payload") or "empty"
        update: SnapshotUpdate | None = None
        with node.lock:
            node.messages[kind] += 1
            if kind == "state":
                update = self._state(node, msg.state)
            elif kind == "runtime":
                self._runtime(node, msg.runtime)
            elif kind == "event":
                self._event(node, msg.event)
            elif kind == "response":
                if msg.response.result == pb.CommandResponse.ERR:
                    node.command_errors += 1
                elif msg.response.HasField("effective_config"):
                    node.config = msg.response.effective_config
            elif kind == "notice":
                node.notices[_notice_kind(msg.notice.kind)] += 1
        for listener in self.listeners:
            listener(node, msg, update)
        return update

    def _runtime(self, node: NodeState, runtime: pb.Runtime) -> None:
        old = node.runtime
        if old is not None and old.peer_id and runtime.peer_id and old.peer_id != runtime.peer_id:
            node.pending_restart = True  # a new identity: the next State starts afresh
        node.runtime = runtime

    def _state(self, node: NodeState, state: pb.State) -> SnapshotUpdate | None:
        with _gc_paused():
            return self._accept_state(node, state)

    def _accept_state(self, node: NodeState, state: pb.State) -> SnapshotUpdate | None:
        cur = snapshot_of(state)
        prev = node.snapshot
        restart, node.pending_restart = node.pending_restart, False
        if prev is not None and not restart:
            if cur.instant_ts and cur.instant_ts == prev.instant_ts:
                node.dropped_snapshots["duplicate"] += 1
                return None
            if cur.instant_ts and cur.instant_ts < prev.instant_ts:
                node.older_in_a_row += 1
                if node.older_in_a_row < CLOCK_STEP_AFTER:
                    node.dropped_snapshots["out_of_order"] += 1
                    return None
                # Not a stray late State but a clock that stepped back: without this, one State
                # stamped in the future would have the node's data dropped until its clock caught up.
                log.warning(
                    "node %s: %d States in a row older than the last one; following its clock back",
                    node.name,
                    node.older_in_a_row,
                )
            restart = _looks_restarted(prev, cur)
        node.older_in_a_row = 0
        if restart and prev is not None:
            node.restarts += 1
            log.info("node %s: restart detected; counters continue from the new baseline", node.name)
        diff = node.tracker.step(cur, restart=restart and prev is not None)
        update = SnapshotUpdate(prev, cur, diff)
        for sub in self.subsystems:
            sub.on_snapshot(node.accs[sub.name], update)
        node.snapshot = cur
        node.last_snapshot_wall = time.time()
        return update

    def _event(self, node: NodeState, event: pb.Event) -> None:
        try:
            content = json.loads(event.content) if event.content else {}
            if not isinstance(content, dict):
                content = None
        except (ValueError, RecursionError):
            content = None
        view = EventView(event.type.name, event.ts, content, event)
        for sub in self.subsystems:
            sub.on_event(node.accs[sub.name], view)


_NOTICE_KINDS = {value: name.lower() for name, value in pb.ServerNotice.Kind.items()}


def _notice_kind(kind: int) -> str:
    """A notice kind as a label value; proto3 enums are open, so an unknown number is ``unknown``."""
    return _NOTICE_KINDS.get(kind, "unknown")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while a snapshot is mapped.

    A large State creates tens of thousands of short-lived, acyclic objects that reference counting
    frees anyway; letting the cyclic collector scan them more than doubled mapping time (bench/).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _looks_restarted(prev: Snapshot, cur: Snapshot) -> bool:
    """A node restart: its cumulative node traffic went backwards.

    ``start_ts`` alone is not trusted: the observer-toolkit mock moves it with every snapshot.
    """
    if not (prev.traffic.present and cur.traffic.present):
        return False
    return cur.traffic.bytes_in < prev.traffic.bytes_in or cur.traffic.bytes_out < prev.traffic.bytes_out
