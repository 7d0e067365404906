"""The garbage-collector pacer: when a full collection is due, what it records, and that the
interpreter gets its own collector back."""

from __future__ import annotations

import asyncio
import gc

from exporter.app.gc_pacer import GcPacer
from exporter.sinks.exposition import BlockWriter, Format, join


def test_due_on_growth_then_on_period() -> None:
    now, grown, alive = [0.0], [0], [300_000]
    pacer = GcPacer(
        min_growth=100_000,
        max_period_s=600.0,
        clock=lambda: now[0],
        grown=lambda: grown[0],
        alive=lambda: alive[0],
        collect=lambda: 7,
    )
    pacer._collected()
    assert pacer.growth == 150_000  # half of what is alive, above the floor
    grown[0] = 149_999
    assert not pacer.due()
    grown[0] = 150_000
    assert pacer.due()
    pacer.run_once()
    grown[0] = 0
    assert (pacer.collections, pacer.found) == (1, 7) and pacer.pause_s >= 0.0
    now[0] = 599.0
    assert not pacer.due()
    now[0] = 600.0
    assert pacer.due()
    alive[0] = 10
    pacer.run_once()
    assert pacer.growth == 100_000  # never below the floor
    out = BlockWriter()
    pacer.write(out)
    text = join([out.finish()], Format.TEXT).decode()
    assert "libp2p_exporter_gc_collections_total 2.0" in text
    assert "libp2p_exporter_gc_collected_objects_total 14.0" in text


def test_start_turns_automatic_collection_off_and_stop_restores_it() -> None:
    async def main() -> None:
        assert gc.isenabled()
        pacer = GcPacer(check_s=0.01, min_growth=1, collect=lambda: 0)
        pacer.start()
        try:
            assert not gc.isenabled() and gc.get_freeze_count() > 0
            junk = [[i] for i in range(10)]  # grows the count past min_growth: due at the next check
            async with asyncio.timeout(10):
                while pacer.collections == 0:
                    await asyncio.sleep(0.01)
            del junk
        finally:
            await pacer.stop()
        assert gc.isenabled() and gc.get_freeze_count() == 0

    asyncio.run(main())
