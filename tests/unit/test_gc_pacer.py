"""The garbage-collector pacer: when a full collection is due, what it records, and that the
interpreter gets its own collector back."""

from __future__ import annotations

import asyncio
import gc

from exporter.app.gc_pacer import GcPacer
from exporter.sinks.exposition import BlockWriter, Format, join


def test_due_on_growth_then_on_period_and_each_walk_is_frozen_after() -> None:
    now, grown, alive, calls = [0.0], [0], [100_000], []
    pacer = GcPacer(
        step=100_000,
        full_period_s=3600.0,
        clock=lambda: now[0],
        grown=lambda: grown[0],
        alive=lambda: alive[0],
        collect=lambda: calls.append("collect") or 7,
        freeze=lambda: calls.append("freeze"),
        unfreeze=lambda: calls.append("unfreeze"),
    )
    grown[0] = 99_999
    assert not pacer.due()
    grown[0] = 100_000
    assert pacer.due()
    alive[0] = 300_000
    pacer.run_once()
    grown[0] = 0
    assert pacer.growth == 150_000  # the next one when half as much again is alive (frozen included)
    # A walk of what is new only (nothing unfrozen), and the survivors frozen out of the next one.
    assert calls == ["collect", "freeze"]
    assert (pacer.collections, pacer.full_collections, pacer.found) == (1, 0, 7) and pacer.pause_s >= 0.0
    now[0] = 3599.0
    assert not pacer.due()
    now[0] = 3600.0
    assert pacer.due()
    calls.clear()
    pacer.run_once()
    assert calls == ["unfreeze", "collect", "freeze"]  # the periodic walk of everything
    alive[0] = 10
    pacer.run_once()
    assert pacer.growth == 100_000  # never below the step
    assert (pacer.collections, pacer.full_collections) == (3, 1) and not pacer.due()
    out = BlockWriter()
    pacer.write(out)
    text = join([out.finish()], Format.TEXT).decode()
    assert "libp2p_exporter_gc_collections_total 3.0" in text
    assert "libp2p_exporter_gc_collected_objects_total 21.0" in text


def test_a_collection_walks_only_what_came_since_the_last() -> None:
    """With the real collector: after a paced collection, the next one does not walk the survivors
    (they are frozen), so its pause does not grow with what the exporter holds."""
    kept = [[i] for i in range(50_000)]
    pacer = GcPacer(step=1)
    frozen_before = gc.get_freeze_count()
    try:
        pacer.run_once()
        assert gc.get_freeze_count() >= frozen_before + len(kept)
        assert len(gc.get_objects()) < len(kept)  # the walked generations no longer hold them
    finally:
        gc.unfreeze()


def test_start_turns_automatic_collection_off_and_stop_restores_it() -> None:
    async def main() -> None:
        assert gc.isenabled()
        pacer = GcPacer(check_s=0.01, step=1, alive=lambda: 0, collect=lambda: 0)
        pacer.start()
        try:
            assert not gc.isenabled() and gc.get_freeze_count() > 0
            junk = [[i] for i in range(10)]  # grows the count past the step: due at the next check
            async with asyncio.timeout(10):
                while pacer.collections == 0:
                    await asyncio.sleep(0.01)
            del junk
        finally:
            await pacer.stop()
        assert gc.isenabled() and gc.get_freeze_count() == 0

    asyncio.run(main())
