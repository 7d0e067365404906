"""Counts stay exact under overload (issue 20): many generator nodes, a small ingest budget, so the
governor raises the State interval (and shedding supersedes States); then the exporter's opened and
closed totals and its connection-duration histogram are checked against the ground truth the
generator keeps (every connection it created and closed), not against the exporter's own output."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import pytest

from exporter.app.runtime import build_hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.governor import GovernorOptions
from exporter.sources.manager import SessionManager
from exporter.sources.options import Target
from tests.support.introspect_server import IntrospectServer, ServerThread
from tests.support.live import FAST
from tests.support.procs import until
from tests.support.samples import hub_series, matching, total

NODES = 24
STEP_MS = 100  # one generator step per 100 ms of --interval
RETENTION_STEPS = 40  # closed connections stay listed 40 steps: 4 s, so the ceiling is 1 s (retention / 4)
# and, with the margin narrowed (every node at 1 s and still behind), 3.2 s (retention / 1.25)
DURATION = "libp2p_swarm_connection_duration_seconds"


@pytest.fixture
def fleet() -> Iterator[tuple[IntrospectServer, ServerThread]]:
    srv = IntrospectServer()
    for i in range(NODES):
        srv.add(
            f"{i:02d}", seed=500 + i, connections=12, step_ms=STEP_MS, retention_steps=RETENTION_STEPS, vanish=False
        )
    thread = ServerThread(srv)
    with thread:
        yield srv, thread


class Seen:
    """A recorder: the first and the last State the hub ingested for one node."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None
        self.states = 0

    def write(self, msg: pb.ServerMessage) -> None:
        if msg.WhichOneof("payload") == "state":
            self.states += 1
            self.last = msg.state.instant_ts
            if self.first is None:
                self.first = msg.state.instant_ts

    def close(self) -> None:
        pass


def truth(ledger: dict[int, list[int | None]], f: int, last: int) -> tuple[int, int, list[float]]:
    """(opened, closed, closed durations in s) the exporter must show after ingesting steps f..last:
    connections open in the first State it saw or created after it; closes after the first State."""
    opened = closed = 0
    durations: list[float] = []
    for created, open_ts, close_step, close_ts in ledger.values():
        assert created is not None and open_ts is not None
        if created > last:
            continue
        open_at_first = created <= f and (close_step is None or close_step > f)
        if open_at_first or created > f:
            opened += 1
            if close_step is not None and close_step <= last:
                closed += 1
                assert close_ts is not None  # vanish=False: every end is a close the States show
                durations.append((close_ts - open_ts) / 1000.0)
    return opened, closed, durations


@pytest.mark.parametrize("margin", [4.0, 1.25], ids=["ceiling-retention-over-4", "margin-narrowed-to-1.25"])
async def test_counts_stay_exact_while_the_interval_is_raised(
    fleet: tuple[IntrospectServer, ServerThread], margin: float
) -> None:
    srv, thread = fleet
    hub = build_hub(live=True)
    seen = {f"n{i:02d}": Seen() for i in range(NODES)}
    # a small budget: the interval climbs to retention / 4, then (when allowed) the margin narrows
    budget = GovernorOptions(budget=0.02, period_s=0.25, min_retention_margin=margin)
    manager = SessionManager(
        hub, replace(FAST, interval_ms=STEP_MS), recorder_factory=seen.__getitem__, governor=budget, probe_idle_s=0
    )
    hub.add_global_writer(manager.governor.write_metrics)
    for i in range(NODES):
        manager.add(Target(url=srv.url(f"{i:02d}"), name=f"n{i:02d}", interval_ms=STEP_MS))
    try:
        ceiling = int(RETENTION_STEPS * STEP_MS / margin)
        sessions = list(manager.sessions.values())
        await until(
            lambda: all(s.stats.effective_interval_ms == ceiling for s in sessions),
            timeout=60,
            what="the ceiling agreed",
        )
        marks = {name: s.states for name, s in seen.items()}
        await until(
            lambda: all(s.states >= marks[n] + 4 for n, s in seen.items()), timeout=60, what="4 States more each"
        )
        # Read the exporter and what it ingested in one step of the loop (nothing ingests in between).
        exported = hub_series(hub)
        ingested = {name: (s.first, s.last) for name, s in seen.items()}
        ledgers = {
            name: thread.call(
                lambda key=name[1:]: (
                    dict((k, list(v)) for k, v in srv.nodes[key].data.ledger.items()),
                    srv.nodes[key].data.start_ms,
                )
            )
            for name in seen
        }
    finally:
        await manager.close()
    assert manager.governor.factor > 1 and manager.governor.changes["up"] >= 2
    bounds = sorted({float(dict(lbl)["le"]) for (n, lbl) in exported if n == DURATION + "_bucket"})
    assert bounds and bounds[-1] == math.inf
    closes_checked = 0
    for name, (first, last) in ingested.items():
        assert first is not None and last is not None
        ledger, start_ms = ledgers[name]
        f, last_step = (first - start_ms) // 1000, (last - start_ms) // 1000
        assert last_step > f
        opened, closed, durations = truth(ledger, f, last_step)
        assert total(exported, "libp2p_swarm_connections_opened_total", node=name) == opened, name
        assert total(exported, "libp2p_swarm_connections_closed_total", node=name) == closed, name
        assert total(exported, DURATION + "_count", node=name) == closed, name
        assert total(exported, DURATION + "_sum", node=name) == pytest.approx(sum(durations), abs=1e-6), name
        for le in bounds:
            want = sum(1 for d in durations if d <= le)
            got = sum(matching(exported, DURATION + "_bucket", node=name, le=_le(le)))
            assert got == want, (name, le)
        closes_checked += closed
    assert closes_checked > NODES  # churn happened across the raised interval


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound) if not float(bound).is_integer() else f"{bound:.1f}"
