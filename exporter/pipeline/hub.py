"""The pipeline entry point: messages in, per-node state kept, mappers and listeners fed.

Data flows one way: a source hands decoded ServerMessages (and the faults it met) to ``Hub``; each
node reads each State once into a ``StateStep`` (pipeline/lean.py) for every mapper the hub was
given, and, only while listeners (push sinks such as tracing) are attached, into Snapshot views and
a Diff for them; each parsed Event goes to both. The Prometheus sink reads
the mappers' accumulators at scrape time. Who gets which mappers and listeners is decided by the
caller (the application's composition root), never by the hub or by a source.

What the hub holds is written out through one ``Writer`` (``model/catalogue.py``) by three methods
every sink uses: ``write_node`` (one node's mappers, within its series budget, a failing mapper
isolated), ``write_traces`` (the trace mappers) and ``write_globals`` (the exporter's own families).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from exporter import __version__
from exporter.logs import RateLimitedLog
from exporter.model.budget import Budget
from exporter.model.catalogue import Family, Writer
from exporter.model.labels import LABEL_VALUES_FOLDED, Cardinality
from exporter.model.snapshot import measured, snapshot_of
from exporter.pipeline.events import EventView, parse_event
from exporter.pipeline.lean import LeanTracker, StateStep, Traffic6
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState, SnapshotUpdate
from exporter.pipeline.throttle import SpanShare
from exporter.pipeline.traces import TraceMapper
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import SegmentError
from exporter.protocol.pubsub_codec import TraceEvent

log = logging.getLogger(__name__)
SEGMENT_LOG_INTERVAL_S = 60.0
# A node restarting (or announcing a new peer id) again and again is logged once, then summarised
# every 5 minutes like reconnect warnings: one that changed its peer id in every Runtime wrote 428
# lines in 15 s. The restarts counter counts every one.
RESTART_LOG_INTERVAL_S = 300.0

# This many States in a row older than the last accepted one mean the node's clock went back.
CLOCK_STEP_AFTER = 3

BUILD_INFO = Family("libp2p_exporter_build_info", "gauge", "The exporter's version.", ("version",))
NODES = Family("libp2p_exporter_nodes", "gauge", "Nodes the exporter knows about.")
MAPPER_ERRORS = Family(
    "libp2p_exporter_mapper_errors",
    "counter",
    "Times a mapper raised while writing its families (for a node, or the trace families): they were left "
    "out of that scrape, the rest of it was served.",
    ("mapper",),
)


class Listener:
    """What a push sink hears from the hub; every method is optional (the defaults do nothing).

    Called after the node's state is updated, outside its lock, on the thread that ingests.
    """

    def on_runtime(self, node: NodeState, runtime: pb.Runtime) -> None:
        """A Runtime message arrived (it may name a new peer id)."""

    def on_update(self, node: NodeState, update: SnapshotUpdate) -> None:
        """A State was accepted."""

    def on_event(self, node: NodeState, event: EventView) -> None:
        """An Event arrived, parsed once for everyone."""

    def on_removed(self, name: str) -> None:
        """The node was removed from the hub (its source went away for good)."""

    def on_traces(self, origin: str, events: Sequence[TraceEvent]) -> None:
        """Trace events (go-libp2p-pubsub's tracer) from many traced nodes; see ``pipeline.traces``."""


class InFlight:
    """How many full scrapes are rendering right now (thread-safe); true while any is."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            self._n += 1
        try:
            yield
        finally:
            with self._lock:
                self._n -= 1

    def __bool__(self) -> bool:
        return self._n > 0


class Hub:
    """Holds every node and routes messages through the mappers and listeners it was given."""

    def __init__(self, mappers: Iterable[Mapper] = (), cardinality: Cardinality | None = None) -> None:
        self.cardinality = cardinality or Cardinality()
        self._mappers: list[Mapper] = []
        self._listeners: list[Listener] = []
        self._trace_mappers: list[TraceMapper] = []
        self._global_writers: list[Callable[[Writer], None]] = []
        self.span_share = SpanShare()  # spans kept when behind: the governor sets it, span sinks read it
        self.rendering = InFlight()  # full scrapes rendering now: ingest makes way (sources/fairness.py)
        self.nodes: dict[str, NodeState] = {}
        self._lock = threading.Lock()
        self._segment_log = RateLimitedLog(log, interval=SEGMENT_LOG_INTERVAL_S)  # keys bounded (LRU)
        self._restart_log = RateLimitedLog(log, interval=RESTART_LOG_INTERVAL_S)  # keys bounded (LRU)
        # Mapper failures at scrape time, by mapper name (bounded: one per mapper added).
        self.mapper_errors: dict[str, int] = {}
        self._errors_lock = threading.Lock()  # scrapes of different nodes run at once
        for mapper in mappers:
            self.add_mapper(mapper)

    @property
    def mappers(self) -> tuple[Mapper, ...]:
        """The mappers, in the order they were added (the order of families in the exposition)."""
        return tuple(self._mappers)

    def add_mapper(self, mapper: Mapper) -> None:
        """Add a mapper; nodes already known get a fresh accumulator for it. One per name."""
        with self._lock:
            if any(m.name == mapper.name for m in self._mappers):
                raise ValueError(f"a mapper named {mapper.name!r} is already on this hub")
            for node in self.nodes.values():
                with node.lock:
                    node.accs.setdefault(mapper.name, mapper.new_accumulator())
                    node.touch()
            self._mappers.append(mapper)

    def has_mapper(self, name: str) -> bool:
        return any(m.name == name for m in self._mappers)

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def add_global_writer(self, write: Callable[[Writer], None]) -> None:
        """Add a writer of exporter-wide families that belong to no node (such as the config
        reload's); ``write_globals`` calls it at each scrape, after the exporter's own families."""
        with self._lock:
            self._global_writers.append(write)

    @property
    def trace_mappers(self) -> tuple[TraceMapper, ...]:
        """The trace mappers, in the order they were added (written after the per-node families)."""
        return tuple(self._trace_mappers)

    def add_trace_mapper(self, mapper: TraceMapper) -> None:
        """Add a mapper for trace events (``pipeline.traces``). One per name."""
        with self._lock:
            if any(m.name == mapper.name for m in self._trace_mappers):
                raise ValueError(f"a trace mapper named {mapper.name!r} is already on this hub")
            self._trace_mappers.append(mapper)

    def ingest_traces(self, origin: str, events: Sequence[TraceEvent]) -> None:
        """Trace events from a collector stream or a trace file, to the trace mappers, then the listeners."""
        for mapper in self._trace_mappers:
            mapper.on_traces(origin, events)
        for listener in self._listeners:
            listener.on_traces(origin, events)

    def traces_ended(self, origin: str) -> None:
        """A finite trace source (a file) is done: the mappers may settle what they were waiting on."""
        for mapper in self._trace_mappers:
            mapper.on_traces_ended(origin)

    # -- writing what the hub holds ---------------------------------------------------------------

    def write_node(self, node: NodeState, out: Writer) -> None:
        """One node's samples (the caller holds ``node.lock``): every mapper that applies, within the
        node's series budget. A mapper that raises has its samples for this node dropped and is
        counted; the others are written."""
        card = self.cardinality
        budget = Budget(out, card.series_per_family, card.series_per_node)
        fresh = node.fresh()
        accs = node.accs
        for mapper in self._mappers:
            if mapper.always or fresh:
                mark = budget.mark()
                try:
                    mapper.collect(accs[mapper.name], node, budget)
                except Exception:
                    budget.discard(mark)
                    self._mapper_failed(mapper.name, node.name)
        budget.close()

    def write_traces(self, out: Writer) -> None:
        """The trace mappers' families (written once per scrape, after the per-node ones)."""
        for mapper in self._trace_mappers:
            held = Budget(out, 1 << 62, 1 << 62)  # no budget: held only to drop a failed mapper's samples
            try:
                mapper.collect(held)
            except Exception:
                self._mapper_failed(mapper.name, None)
                continue
            held.close()

    def write_globals(self, out: Writer) -> None:
        """The exporter's own families that belong to no node, then the global writers' (a reload's)."""
        out.info(BUILD_INFO, {"version": __version__})
        out.gauge(NODES, len(self.nodes))
        for guard in self.cardinality.guards():
            out.counter(LABEL_VALUES_FOLDED, guard.folded, {"label": guard.label})
        with self._errors_lock:
            errors = dict(self.mapper_errors)
        for name in sorted({m.name for m in self._mappers} | {m.name for m in self._trace_mappers} | set(errors)):
            out.counter(MAPPER_ERRORS, errors.get(name, 0), {"mapper": name})
        for write in self._global_writers:
            write(out)

    def _mapper_failed(self, mapper: str, node: str | None) -> None:
        with self._errors_lock:
            first = mapper not in self.mapper_errors
            self.mapper_errors[mapper] = self.mapper_errors.get(mapper, 0) + 1
        if first:  # a bug, not a remote peer's doing: its traceback once, then only the count
            where = f"node {node}" if node is not None else "the trace families"
            log.exception(
                "mapper %s failed writing %s; its families are left out where it fails "
                "(counted in libp2p_exporter_mapper_errors_total, logged once)",
                mapper,
                where,
            )

    def node(self, name: str, labels: dict[str, str] | None = None) -> NodeState:
        with self._lock:
            node = self.nodes.get(name)
            if node is None:
                node = NodeState(name=name, labels=dict(labels or {}), lean=LeanTracker(self.cardinality))
                node.accs = {m.name: m.new_accumulator() for m in self._mappers}
                self.nodes[name] = node
            return node

    def remove(self, name: str) -> None:
        with self._lock:
            removed = self.nodes.pop(name, None)
        if removed is not None:
            self._restart_log.forget(_restart_key(name))  # what was suppressed is reported when the node goes
            for listener in self._listeners:
                listener.on_removed(name)

    def errors(self, name: str, errors: Iterable[SegmentError]) -> None:
        node = self.node(name)
        with node.lock:
            node.touch()
            for err in errors:
                node.segment_errors[err.reason] += 1
                # A node sending damage all the time is one line per node and reason per minute, the
                # rest summarised; every stretch is counted in libp2p_exporter_segment_errors_total.
                self._segment_log.warning(f"{name} {err.reason}", "node %s: skipped segment at %s", name, err)

    def ingest(self, name: str, msg: pb.ServerMessage) -> StateStep | None:
        """Route one message; for a State that was accepted, what it showed and changed (else None)."""
        node = self.node(name)
        kind = msg.WhichOneof("payload") or "empty"
        step: StateStep | None = None
        update: SnapshotUpdate | None = None
        event: EventView | None = None
        with node.lock:
            node.touch()  # every message is counted in the exposition at least
            node.messages[kind] += 1
            if kind == "state":
                step, update = self._state(node, msg.state)
            elif kind == "runtime":
                self._runtime(node, msg.runtime)
            elif kind == "event":
                event = self._event(node, msg.event)
            elif kind == "response":
                if msg.response.result == pb.CommandResponse.ERR:
                    node.command_errors += 1
                elif msg.response.HasField("effective_config"):
                    node.config = msg.response.effective_config
            elif kind == "notice":
                node.notices[_notice_kind(msg.notice.kind)] += 1
        for listener in self._listeners:
            if update is not None:
                listener.on_update(node, update)
            elif event is not None:
                listener.on_event(node, event)
            elif kind == "runtime":
                listener.on_runtime(node, msg.runtime)
        return step

    def _runtime(self, node: NodeState, runtime: pb.Runtime) -> None:
        old = node.runtime
        if old is not None and old.peer_id and runtime.peer_id and old.peer_id != runtime.peer_id:
            node.pending_restart = True  # a new identity: the next State starts afresh
        node.runtime = runtime

    def _state(self, node: NodeState, state: pb.State) -> tuple[StateStep | None, SnapshotUpdate | None]:
        """Accept a State (or count it dropped): its step, and the update for listeners if there are any."""
        prev = node.last_step
        instant_ts = state.instant_ts
        restart, node.pending_restart = node.pending_restart, False
        if prev is not None and not restart:
            if instant_ts and instant_ts == prev.instant_ts:
                node.dropped_snapshots["duplicate"] += 1
                return None, None
            if instant_ts and instant_ts < prev.instant_ts:
                node.older_in_a_row += 1
                if node.older_in_a_row < CLOCK_STEP_AFTER:
                    node.dropped_snapshots["out_of_order"] += 1
                    return None, None
                # Not a stray late State but a clock that stepped back: without this, one State
                # stamped in the future would have the node's data dropped until its clock caught up.
                log.warning(
                    "node %s: %d States in a row older than the last one; following its clock back",
                    node.name,
                    node.older_in_a_row,
                )
            restart = _looks_restarted(prev.traffic, state)
        node.older_in_a_row = 0
        restart = restart and prev is not None
        rewound, node.rewound = node.rewound, False
        if restart and not rewound:
            node.restarts += 1
            self._restart_log.log(
                logging.INFO,
                _restart_key(node.name),
                "node %s: restart detected; counters continue from the new baseline",
                node.name,
            )
        if prev is not None and not restart and node.config is not None:
            retention = node.config.retention_period_ms
            if retention and instant_ts and prev.instant_ts and instant_ts - prev.instant_ts > retention:
                node.retention_gaps += 1
        step = node.lean.step(state, restart)
        step.exemplars = bool(self._listeners) or node.spans is not None
        accs = node.accs
        for mapper in self._mappers:
            mapper.on_state(accs[mapper.name], step)
        node.last_step = step
        node.last_snapshot_wall = time.time()
        update = None
        if self._listeners:
            cur = snapshot_of(state)
            update = SnapshotUpdate(node.last_snapshot, cur, node.tracker.step(cur, restart=restart))
            node.last_snapshot = cur
        return step, update

    def _event(self, node: NodeState, event: pb.Event) -> EventView:
        view = parse_event(event)
        for mapper in self._mappers:
            mapper.on_event(node.accs[mapper.name], view)
        return view


_NOTICE_KINDS = {value: name.lower() for name, value in pb.ServerNotice.Kind.items()}


def _notice_kind(kind: int) -> str:
    """A notice kind as a label value; proto3 enums are open, so an unknown number is ``unknown``."""
    return _NOTICE_KINDS.get(kind, "unknown")


def _looks_restarted(prev: Traffic6 | None, state: pb.State) -> bool:
    """A node restart: its cumulative node traffic went backwards.

    ``start_ts`` alone is not trusted: the observer-toolkit mock moves it with every snapshot.
    """
    if prev is None or not state.HasField("traffic"):
        return False
    t = state.traffic  # a direction unset (all-zero DataGauge) now or before proves nothing
    went_back_in = prev[0] is not None and measured(t.traffic_in) and t.traffic_in.cum_bytes < prev[0]
    went_back_out = prev[1] is not None and measured(t.traffic_out) and t.traffic_out.cum_bytes < prev[1]
    return went_back_in or went_back_out


def _restart_key(name: str) -> str:
    """The rate limiter's key, which its summary line starts with: ``node N restart detected: …``."""
    return f"node {name} restart detected"
