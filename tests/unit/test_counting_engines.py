"""The two counting engines agree (issue 21, item 4).

``pipeline/lean.py`` (what the mappers count) and ``pipeline/diff.py`` over ``model/snapshot.py`` (what
the span sink turns into spans) both claim the same rules: an item already closed in the first State is
never counted; a close is seen by status, by ``close_ts`` or by vanishing, and counted once; a restart
ends everything open at the last instant seen. Here both read the same generated States
(``exporter/generator.py``) with random closes, vanishings, flapping items and restarts on top, and every
State must give both the same opens, the same closes with the same durations, per direction, and the
same stream opens and closes per protocol.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.generator import SyntheticNode
from exporter.model.labels import Cardinality
from exporter.model.snapshot import snapshot_of
from exporter.pipeline.diff import Diff, Ended, Tracker
from exporter.pipeline.lean import LeanTracker, StateStep
from exporter.protocol import introspection_pb2 as pb

OPS = (
    "step",
    "close_conn",
    "close_conn_ts",
    "close_stream",
    "vanish_conn",
    "vanish_stream",
    "drop_streams",
    "unnegotiated",
    "restart",
)
Op = tuple[str, int]


def _duration(open_ts: int, end_ms: int) -> float | None:
    return (end_ms - open_ts) / 1000.0 if open_ts and end_ms >= open_ts else None


def _mutate(state: pb.State, op: str, pick: int) -> None:
    """One change to this State only: the generator's next State shows the item as it really is."""
    conns = state.subsystems.connections
    if not conns:
        return
    c = conns[pick % len(conns)]
    streams = c.streams.streams
    if op == "close_conn":
        c.status = pb.CLOSED if pick % 2 else pb.ERROR  # closed by status alone: no close_ts
    elif op == "close_conn_ts":
        c.timeline.close_ts = state.instant_ts - pick % 500
    elif op == "vanish_conn":
        del conns[pick % len(conns)]
    elif streams and op == "close_stream":
        streams[pick % len(streams)].status = pb.CLOSED
    elif streams and op == "vanish_stream":
        del streams[pick % len(streams)]
    elif op == "drop_streams":  # a node pruning a (closed) connection's streams before the connection
        del streams[:]
    elif streams and op == "unnegotiated":  # the protocol not yet known in this State
        streams[pick % len(streams)].protocol = ""


def _lean_counts(step: StateStep) -> tuple[Counter[object], ...]:
    return (
        Counter(labels[0] for labels, _ in step.opened),
        Counter((labels[0], lifetime) for labels, lifetime in step.closed),
        Counter(step.s_opened),
        Counter(step.s_closed),
    )


def _diff_counts(diff: Diff, card: Cardinality) -> tuple[Counter[object], ...]:
    def closed(ended: list[Ended]) -> Counter[object]:  # type: ignore[type-arg]
        return Counter(
            ((card.protocol(e.view.protocol), e.view.dir) if hasattr(e.view, "protocol") else (e.view.dir,))
            + (_duration(e.view.open_ts, e.end_ms),)
            for e in ended
        )

    return (
        Counter(v.dir for v in diff.opened_conns),
        closed(diff.closed_conns),
        Counter((card.protocol(v.protocol), v.dir) for v in diff.opened_streams),
        closed(diff.closed_streams),
    )


def run_both(seed: int, connections: int, streams: int, churn: float, ops: list[Op]) -> int:
    """Feed both engines the same States; returns how many States were compared."""
    card = Cardinality(protocol_cap=10_000)  # no protocol folds into `other`: labels compare as text
    lean, tracker = LeanTracker(card), Tracker()
    node = SyntheticNode(connections=connections, streams_per_conn=streams, churn=churn, seed=seed, buckets=1)
    compared = 0
    restart = False
    for op, pick in ops:
        if op == "restart":
            # A new node process: new identities and counters, the clock moving on.
            node = SyntheticNode(
                connections=connections,
                streams_per_conn=streams,
                churn=churn,
                seed=seed + pick + 1,
                buckets=1,
                start_ms=node.now + node.interval_ms,
            )
            restart = True
            continue
        if op == "step":
            node.step()
        state = pb.State()
        state.CopyFrom(node.state().state)
        _mutate(state, op, pick)
        step = lean.step(state, restart)
        diff = tracker.step(snapshot_of(state), restart)
        restart = False
        names = ("connection opens", "connection closes", "stream opens", "stream closes")
        for name, got, want in zip(names, _lean_counts(step), _diff_counts(diff, card)):
            assert got == want, f"State {compared} after {op}: {name} differ: lean {got} vs diff {want}"
        compared += 1
    return compared


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(1, 10_000),
    connections=st.integers(1, 8),
    streams=st.integers(0, 3),
    churn=st.sampled_from([0.0, 0.1, 0.3, 0.6]),
    ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1_000)), min_size=1, max_size=30),
)
def test_lean_and_diff_count_the_same(seed: int, connections: int, streams: int, churn: float, ops: list[Op]) -> None:
    run_both(seed, connections, streams, churn, ops)


def test_a_long_churning_run_agrees() -> None:
    """Many States of a busy node, every kind of change, deterministic."""
    ops: list[Op] = [(OPS[i % len(OPS)] if i % 5 else "step", i * 7919 % 1000) for i in range(300)]
    assert run_both(seed=3, connections=20, streams=3, churn=0.3, ops=ops) > 250
