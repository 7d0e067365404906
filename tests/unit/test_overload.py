"""Never starve: one byte budget for all targets, sheds the biggest backlog first; the ingest gate
makes way for the loop. Deterministic: sizes are given, the gate's clock is scripted."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from exporter.protocol import introspection_pb2 as pb
from exporter.sources.buffer import BoundedBuffer, SharedBudget
from exporter.sources.fairness import IngestGate


def _state(ts: int) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    msg.state.instant_ts = ts
    return msg


async def test_shared_budget_sheds_the_biggest_backlog_oldest_first() -> None:
    budget = SharedBudget(max_bytes=1000)
    drops = {name: Counter[str]() for name in ("calm", "busy", "quiet")}
    bufs = {name: BoundedBuffer(100, drops[name], max_bytes=0, budget=budget) for name in drops}
    bufs["calm"].put(_state(1), 200)
    bufs["quiet"].put(_state(1), 100)
    for ts in range(1, 7):  # busy piles up 6 x 100 bytes: 900 in all, within the budget
        bufs["busy"].put(_state(ts), 100)
    assert budget.bytes == 900 and sum(sum(d.values()) for d in drops.values()) == 0
    bufs["busy"].put(_state(7), 100)  # 1000: still fits
    bufs["calm"].put(_state(2), 150)  # 1150: the busiest (busy, 700 bytes) sheds its two oldest
    assert budget.bytes <= 1000
    assert drops["busy"] == Counter(state=2) and not drops["calm"] and not drops["quiet"]
    assert [m.state.instant_ts for m, _ in bufs["busy"].items] == [3, 4, 5, 6, 7]  # newest kept
    assert [m.state.instant_ts for m, _ in bufs["calm"].items] == [1, 2]  # the calm node is untouched
    # Taking and popping give the bytes back to the shared budget; a closed buffer leaves it.
    bufs["busy"].take()
    assert budget.bytes == 450
    popped = bufs["calm"].pop()
    assert popped is not None and popped[1] == 200 and budget.bytes == 250
    # what the governor sizes its step by: every State that reached a buffer (shed or not), and
    # those taken to be parsed (a take() at close is not parsing)
    assert (budget.states_in, budget.states_taken) == (10, 1)
    bufs["calm"].close()
    assert budget.bytes == 100 and bufs["calm"] not in budget.buffers


async def test_shared_budget_keeps_each_newest_message() -> None:
    """Over budget with one message per buffer: nothing more is shed (the latest State always stays)."""
    budget = SharedBudget(max_bytes=100)
    dropped: Counter[str] = Counter()
    a = BoundedBuffer(10, dropped, budget=budget)
    b = BoundedBuffer(10, dropped, budget=budget)
    a.put(_state(1), 80)
    b.put(_state(1), 80)
    assert len(a) == 1 and len(b) == 1 and not dropped


async def test_shared_budget_costs_little_per_put_when_every_buffer_is_down_to_its_newest() -> None:
    """4,000 nodes whose newest States alone fill the budget: a put must not look at every buffer
    (a scan per put took 95 % of the loop and collapsed the fleet). Bounded in entries examined."""
    budget = SharedBudget(max_bytes=1000)
    dropped: Counter[str] = Counter()
    bufs = [BoundedBuffer(10, dropped, budget=budget) for _ in range(4000)]
    for buf in bufs:
        buf.put(_state(1), 100)
    for ts in range(2, 4):  # each node's next State arrives before the last one was taken
        for buf in bufs:
            buf.pop()
            buf.put(_state(ts), 100)
    assert budget.bytes == 400_000 and not dropped  # over, but nothing is sheddable: every newest stays
    assert budget.examined <= 3 * 2 * 4000
    # A node that piles up is still the one cut back, and only down to its newest.
    for ts in range(4, 9):
        bufs[7].put(_state(ts), 100)
    assert dropped == Counter(state=5) and [m.state.instant_ts for m, _ in bufs[7].items] == [8]


async def test_shared_budget_sheds_the_biggest_after_sizes_changed() -> None:
    """Entries that no longer match their buffer (popped since) do not pick the wrong one."""
    budget = SharedBudget(max_bytes=1000)
    drops = {name: Counter[str]() for name in ("a", "b")}
    a = BoundedBuffer(100, drops["a"], budget=budget)
    b = BoundedBuffer(100, drops["b"], budget=budget)
    for ts in range(5):
        a.put(_state(ts), 100)  # a: 500
    for ts in range(3):
        b.put(_state(ts), 100)  # b: 300
    for _ in range(4):
        a.pop()  # a: 100, but its heap entries still say 500
    for ts in range(3, 10):
        b.put(_state(ts), 100)  # b: 1000, total 1100: b is the biggest now
    assert budget.bytes <= 1000 and drops["b"] == Counter(state=1) and not drops["a"]


async def test_ingest_gate_yields_once_the_slice_is_spent() -> None:
    now = [0.0]
    gate = IngestGate(slice_s=0.02, clock=lambda: now[0])
    order: list[str] = []

    async def consumer(name: str, steps: int) -> None:
        for _ in range(steps):
            await gate.turn()
            order.append(name)
            now[0] += 0.015  # each message costs 15 ms of the slice

    async def probe() -> None:  # stands for a health check arriving meanwhile
        await asyncio.sleep(0)
        order.append("probe")

    await asyncio.gather(consumer("a", 3), consumer("b", 3), probe())
    assert gate.yields >= 2
    # Within one slice at most two 15 ms messages run (the second starts before 20 ms are spent),
    # and the probe got its turn long before all six were ingested.
    assert order.index("probe") <= 3
    assert sorted(x for x in order if x != "probe") == ["a"] * 3 + ["b"] * 3


async def test_a_node_that_falls_behind_keeps_its_newest_states() -> None:
    """Past ``max_states`` queued States the oldest queued State goes (counted); events stay queued."""
    dropped: Counter[str] = Counter()
    buf = BoundedBuffer(100, dropped, max_states=2)
    ev = pb.ServerMessage()
    ev.event.type.name = "X"
    buf.put(_state(1))
    buf.put(ev)
    buf.put(_state(2))
    buf.put(_state(3))
    assert dropped == Counter(state=1) and buf.states == 2
    kinds = [(m.WhichOneof("payload"), m.state.instant_ts) for m, _ in buf.items]
    assert kinds == [("event", 0), ("state", 2), ("state", 3)]
    assert buf.pop() is not None and buf.states == 2
    buf.pop()
    assert buf.states == 1


async def test_ingest_makes_way_while_a_full_scrape_renders_for_at_most_the_hold() -> None:
    """No new slice starts while a scrape renders: it ends when the scrape does, or after the
    hold (then ingest goes on though the scrape still renders, and waits no second time for it)."""
    now, busy = [0.0], [True]
    gate = IngestGate(slice_s=0.02, clock=lambda: now[0], busy=lambda: busy[0], max_hold_s=1.0)
    await gate.turn()
    now[0] += 0.05  # slice spent while a scrape renders
    waiting = asyncio.ensure_future(gate.turn())
    for _ in range(5):
        await asyncio.sleep(0.02)  # several hold steps of real loop time pass
    assert not waiting.done()
    now[0] += 0.3
    busy[0] = False  # the scrape is done: the next hold step starts a slice
    await asyncio.wait_for(waiting, 5)
    assert gate.held_s == pytest.approx(0.3)

    busy[0] = True  # a long scrape: held for max_hold_s, then ingest goes on
    now[0] += 0.05
    waiting = asyncio.ensure_future(gate.turn())
    await asyncio.sleep(0.02)
    assert not waiting.done()
    now[0] += 1.0
    await asyncio.wait_for(waiting, 5)
    now[0] += 0.05  # the next slice is spent too, the scrape still renders: no second hold
    await asyncio.wait_for(gate.turn(), 5)
    assert gate.held_s == pytest.approx(1.3)


async def test_shared_budget_always_cuts_the_biggest_backlog_first() -> None:
    """Against the plain rule, over many random puts and pops: whenever the budget sheds, the first
    buffer it cuts holds the most bytes (then messages) of all buffers that have anything to shed,
    as a scan of every buffer would find, however stale the heap's entries are by then."""
    rng = random.Random(7)
    budget = SharedBudget(max_bytes=5_000)
    dropped: Counter[str] = Counter()
    bufs = [BoundedBuffer(1000, dropped, budget=budget) for _ in range(40)]
    first_cut: list[tuple[int, int]] = []
    real_shed = BoundedBuffer.shed_oldest

    def recording_shed(self: BoundedBuffer) -> None:
        if not first_cut:
            first_cut.append((self.bytes, len(self.items)))
        real_shed(self)

    BoundedBuffer.shed_oldest = recording_shed  # type: ignore[method-assign]
    try:
        cuts = 0
        for ts in range(5_000):
            buf = rng.choice(bufs)
            if rng.random() < 0.3:
                buf.pop()
                continue
            nbytes = rng.randrange(1, 400)
            # What a scan would pick once this message is in: the biggest of those with more than one.
            after = {id(b): (b.bytes + (nbytes if b is buf else 0), len(b) + (b is buf)) for b in bufs}
            sheddable = [after[id(b)] for b in bufs if after[id(b)][1] > 1]
            expected = max(sheddable) if sheddable else None
            over = budget.bytes + nbytes > budget.max_bytes
            first_cut.clear()
            buf.put(_state(ts), nbytes)
            if over and expected is not None:
                assert first_cut == [expected]
                cuts += 1
            assert budget.bytes <= budget.max_bytes or all(len(b) <= 1 for b in bufs)
        assert cuts > 500  # the rule was exercised, not skipped
    finally:
        BoundedBuffer.shed_oldest = real_shed  # type: ignore[method-assign]
