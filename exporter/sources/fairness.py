"""Keeping the event loop fair while many sessions ingest.

Why: every live session moves its buffered messages into the hub on the one event-loop thread. If
each ingested a batch before yielding, one loop iteration could run thousands of States back to
back, and ``/healthz``, ``/metrics``, heartbeats and signals would wait behind all of them. The gate
bounds the ingest work done in one loop iteration: once a slice's time is spent, every consumer
waits, and the waiting ones then get one turn per iteration (the loop polls its sockets between
any two), the session longest without a State first.

Why that order (issue 20): when the exporter is past its limit and sheds, a node's accepted States
must still come within its retention for its counts to stay exact. Waking every waiter at once and
letting the first few take the slice served them in the order they had started waiting, and cost a
wake-up of every waiting session per slice.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

SLICE_S = 0.02  # ingest time per loop iteration before everyone yields
# While a full scrape renders (on a worker thread, sharing the interpreter with this loop), no new
# slice starts for up to MAX_HOLD_S: the render gets the interpreter to itself instead of half of
# it, so /metrics answers in its render time. Capped, so a scrape that renders for longer (or
# scrapes back to back) delays ingest, never stops it.
MAX_HOLD_S = 1.0
HOLD_STEP_S = 0.01


class IngestGate:
    """Shared by the sessions of one loop: ``await gate.turn(since)`` before each message ingested."""

    def __init__(
        self,
        slice_s: float = SLICE_S,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], bool] | None = None,
        max_hold_s: float = MAX_HOLD_S,
    ) -> None:
        self.slice_s = slice_s
        self.clock = clock
        self.busy = busy  # true while a full scrape renders
        self.max_hold_s = max_hold_s
        self.started = clock()
        # Sessions waiting for a slice: (since, arrival, future), the oldest ``since`` first.
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._pending = False  # a _new_slice is scheduled
        self._held_since: float | None = None
        self._hold_spent = False
        self.yields = 0  # turns that had to wait (how often ingest made way)
        self.held_s = 0.0  # time no slice started because a scrape was rendering

    async def turn(self, since: float = 0.0) -> None:
        """Return at once while the current slice has time left and nobody waits; else wait.

        ``since`` is when this session last had a State ingested (0: never). Waiting sessions get
        their turns one per loop iteration (the loop polls its sockets, /healthz and signals between
        any two), the oldest ``since`` first: under overload every node is served in turn, the one
        longest without a State first, so the States a node gets accepted stay as evenly spaced as
        the exporter's rate allows (``libp2p_exporter_retention_gaps_total`` counts the misses).
        """
        if not self._waiting and self.clock() - self.started <= self.slice_s:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (since, next(self._arrivals), fut))
        self.yields += 1
        self._schedule()
        await fut

    def _schedule(self) -> None:
        # call_soon runs after this iteration's ready callbacks, and the waiter it wakes runs one
        # iteration later still, after the loop has polled I/O.
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self._new_slice)

    def _new_slice(self) -> None:
        # No collection here: while serving, the cyclic collector is paced by app/gc_pacer.py.
        self._pending = False
        now = self.clock()
        if self.busy is not None and self.busy():
            if self._held_since is None:
                self._held_since = now
            if not self._hold_spent:
                if now - self._held_since < self.max_hold_s:
                    self._pending = True
                    asyncio.get_running_loop().call_later(HOLD_STEP_S, self._new_slice)
                    return
                self._hold_spent = True  # no second hold until this scrape (or run of scrapes) ends
                self.held_s += now - self._held_since
        else:
            if self._held_since is not None and not self._hold_spent:
                self.held_s += now - self._held_since
            self._held_since, self._hold_spent = None, False
        self.started = self.clock()
        while self._waiting:
            fut = heapq.heappop(self._waiting)[2]
            if not fut.done():  # not a cancelled session's turn
                fut.set_result(None)
                break
        if self._waiting:
            self._schedule()
