"""Python's cyclic garbage collector, paced by the exporter instead of by allocation counts.

Why (issue 20; measured in bench/README.md "Overload"): ingest makes no reference cycles, so
reference counting frees every replaced State's objects, yet the automatic collector walks the
survivors of each young generation again and again. At 1,000 nodes that was 0.24 ms per State (a
tenth of ingest) for nothing found, and every thread, the HTTP one too, waits through each walk:
young collections of up to 0.3 s, and a full one of 0.37 s over 730k objects whenever a quarter of
the heap had been replaced (every few seconds). So while the exporter serves, automatic collection
is off, and a full collection runs when the container objects alive have grown by half since the
last one (what leaking cycles, or a fleet growing, look like) or ``max_period_s`` has passed,
whichever comes first. Its count, pauses and what it found are exported: objects found at all
means something does make cycles.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable

from exporter.model.catalogue import Family, Writer

log = logging.getLogger(__name__)

COLLECTIONS = Family(
    "libp2p_exporter_gc_collections",
    "counter",
    "Full collections of Python's cyclic garbage collector run by the exporter.",
)
PAUSE = Family(
    "libp2p_exporter_gc_pause_seconds",
    "counter",
    "Time the exporter's full collections held the interpreter (every thread waits through one).",
)
FOUND = Family(
    "libp2p_exporter_gc_collected_objects",
    "counter",
    "Unreachable objects those collections freed (reference cycles: none expected in steady state).",
)


class GcPacer:
    """``start()`` turns automatic collection off and paces full collections on the running loop;
    ``stop()`` gives the interpreter its own collector back."""

    def __init__(
        self,
        *,
        min_growth: int = 100_000,
        max_period_s: float = 600.0,
        check_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        grown: Callable[[], int] = lambda: gc.get_count()[0],
        alive: Callable[[], int] = lambda: len(gc.get_objects()),
        collect: Callable[[], int] = gc.collect,
    ) -> None:
        self.min_growth, self.max_period_s, self.check_s = min_growth, max_period_s, check_s
        self.clock, self.grown, self.alive, self.collect = clock, grown, alive, collect
        self.collections = 0
        self.pause_s = 0.0
        self.found = 0
        self.last = clock()
        self.growth = min_growth
        self._task: asyncio.Task[None] | None = None
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        # What start-up built (modules, descriptors, the app) stays out of every later walk.
        gc.collect()
        gc.freeze()
        gc.disable()
        self._collected()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-pacer")

    def due(self) -> bool:
        """A full collection is due: the heap grew by ``growth`` objects, or the period is over."""
        return self.grown() >= self.growth or self.clock() - self.last >= self.max_period_s

    def run_once(self) -> None:
        started = time.perf_counter()
        self.found += self.collect()
        self.pause_s += time.perf_counter() - started
        self.collections += 1
        self._collected()

    def _collected(self) -> None:
        self.last = self.clock()
        # Half of what is alive now, so a fleet coming up costs a few collections, not one per step.
        self.growth = max(self.min_growth, self.alive() // 2)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            if self.due():
                self.run_once()

    def write(self, out: Writer) -> None:
        out.counter(COLLECTIONS, self.collections)
        out.counter(PAUSE, self.pause_s)
        out.counter(FOUND, self.found)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()
