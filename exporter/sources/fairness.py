"""Keeping the event loop fair while many sessions ingest.

Why: every live session moves its buffered messages into the hub on the one event-loop thread. If
each ingested a batch before yielding, one loop iteration could run thousands of States back to
back, and ``/healthz``, ``/metrics``, heartbeats and signals would wait behind all of them. The gate
bounds the ingest work done in one loop iteration: once a slice's time is spent, every consumer
waits for the next slice, which starts only after the loop has polled its sockets again.
"""

from __future__ import annotations

import asyncio
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
    """Shared by the sessions of one loop: ``await gate.turn()`` before each message ingested."""

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
        self._next: asyncio.Future[None] | None = None
        self._held_since: float | None = None
        self._hold_spent = False
        self.yields = 0  # slices that ran out (how often ingest had to make way)
        self.held_s = 0.0  # time no slice started because a scrape was rendering

    async def turn(self) -> None:
        """Return at once while the current slice has time left; else wait for the next slice."""
        while self.clock() - self.started > self.slice_s:
            if self._next is None:
                loop = asyncio.get_running_loop()
                self._next = loop.create_future()
                self.yields += 1
                # call_soon runs after this iteration's ready callbacks, and the waiters it wakes run
                # one iteration later still, after the loop has polled I/O (a health check, a signal).
                loop.call_soon(self._new_slice)
            await self._next

    def _new_slice(self) -> None:
        # No collection here: while serving, the cyclic collector is paced by app/gc_pacer.py.
        now = self.clock()
        if self.busy is not None and self.busy():
            if self._held_since is None:
                self._held_since = now
            if not self._hold_spent:
                if now - self._held_since < self.max_hold_s:
                    asyncio.get_running_loop().call_later(HOLD_STEP_S, self._new_slice)
                    return
                self._hold_spent = True  # no second hold until this scrape (or run of scrapes) ends
                self.held_s += now - self._held_since
        else:
            if self._held_since is not None and not self._hold_spent:
                self.held_s += now - self._held_since
            self._held_since, self._hold_spent = None, False
        fut, self._next = self._next, None
        self.started = self.clock()
        if fut is not None and not fut.done():
            fut.set_result(None)
