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


class IngestGate:
    """Shared by the sessions of one loop: ``await gate.turn()`` before each message ingested."""

    def __init__(self, slice_s: float = SLICE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.slice_s = slice_s
        self.clock = clock
        self.started = clock()
        self._next: asyncio.Future[None] | None = None
        self.yields = 0  # slices that ran out (how often ingest had to make way)

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
        fut, self._next = self._next, None
        self.started = self.clock()
        if fut is not None and not fut.done():
            fut.set_result(None)
