"""Python's cyclic garbage collector, paced by the exporter instead of by allocation counts.

Why (issue 20; measured in bench/README.md "Overload"): ingest makes no reference cycles, so
reference counting frees every replaced State's objects, yet the automatic collector walks the
survivors of each young generation again and again. At 1,000 nodes that was 0.24 ms per State (a
tenth of ingest) for nothing found, and every thread, the HTTP one too, waits through each walk. So
while the exporter serves, automatic collection is off, and the pacer collects instead:

- when the container objects alive have grown by half since the last collection (what leaking
  cycles, or a fleet coming up, look like; at least ``step``). Each collection ends with
  ``gc.freeze()``, so the next one walks only what was created since and is still alive, not
  everything: a walk of everything held every thread for 2.7 s at 4,000 nodes (``/healthz``
  waited that long). Not a fixed step: what ingest creates to replace what it frees is young
  again however little the heap grew, so collecting every 100k objects of growth walked half a
  million objects every 5 s at 2,000 nodes (0.45 s each).
- every ``full_period_s``, everything is unfrozen and walked once, so cycles among long-lived
  objects (a removed node's) are still found; that one pause grows with the fleet.

Its count, pauses and what it found are exported: objects found at all means something does make
cycles.
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
    "Collections of Python's cyclic garbage collector run by the exporter (each walks what was created since "
    "the last one; once an hour, everything).",
)
PAUSE = Family(
    "libp2p_exporter_gc_pause_seconds",
    "counter",
    "Time the exporter's collections held the interpreter (every thread waits through one).",
)
FOUND = Family(
    "libp2p_exporter_gc_collected_objects",
    "counter",
    "Unreachable objects those collections freed (reference cycles: none expected in steady state).",
)


class GcPacer:
    """``start()`` turns automatic collection off and paces collections on the running loop;
    ``stop()`` gives the interpreter its own collector back."""

    def __init__(
        self,
        *,
        step: int = 100_000,
        full_period_s: float = 3600.0,
        check_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        grown: Callable[[], int] = lambda: gc.get_count()[0],
        alive: Callable[[], int] = lambda: len(gc.get_objects()) + gc.get_freeze_count(),
        collect: Callable[[], int] = gc.collect,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
    ) -> None:
        self.step, self.full_period_s, self.check_s = step, full_period_s, check_s
        self.clock, self.grown, self.alive, self.collect = clock, grown, alive, collect
        self.growth = step
        self.freeze, self.unfreeze = freeze, unfreeze
        self.collections = 0
        self.full_collections = 0  # of those, the periodic walks of everything
        self.pause_s = 0.0
        self.found = 0
        self.last_full = clock()
        self._task: asyncio.Task[None] | None = None
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        # What start-up built (modules, descriptors, the app) stays out of every later walk.
        gc.collect()
        gc.freeze()
        gc.disable()
        self.last_full = self.clock()
        self.growth = max(self.step, self.alive() // 2)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-pacer")

    def full_due(self) -> bool:
        return self.clock() - self.last_full >= self.full_period_s

    def due(self) -> bool:
        """A collection is due: the heap grew by ``growth`` objects, or the period is over."""
        return self.grown() >= self.growth or self.full_due()

    def run_once(self) -> None:
        full = self.full_due()
        started = time.perf_counter()
        if full:
            self.unfreeze()
        self.found += self.collect()
        self.freeze()  # the survivors stay out of the next walk
        self.pause_s += time.perf_counter() - started
        self.collections += 1
        if full:
            self.full_collections += 1
            self.last_full = self.clock()
        # Half of what is alive now, so a fleet coming up costs a few collections, not one per step.
        self.growth = max(self.step, self.alive() // 2)

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
