"""The integer-text cache of the exposition writer keeps only counts that repeat (issue 20: byte
totals, new at every render, filled it to its cap and were most of a 200-node exporter's RSS climb)."""

from __future__ import annotations

from exporter.model.catalogue import Family
from exporter.sinks.exposition import block
from exporter.sinks.exposition.block import BlockWriter
from exporter.sinks.exposition.escape import go_float

BYTES = Family("libp2p_test_bytes", "counter", "Bytes.", ())


def test_big_totals_are_rendered_but_not_kept_and_small_counts_are() -> None:
    block._COUNT_TEXT.clear()
    big = [block._COUNT_TEXT_MAX + 17 * i for i in range(500)]
    assert block._count_texts(big) == [go_float(v) for v in big]
    assert not any(v in block._COUNT_TEXT for v in big)
    assert block._count_texts([0, 3, 41]) == ["0.0", "3.0", "41.0"] and {0, 3, 41} <= set(block._COUNT_TEXT)
    for v in big:  # the writer's own path for counter values
        w = BlockWriter(())
        w.counter(BYTES, v, {})
        text = b"".join(p.text for p in w.finish().parts.values()).decode()
        assert f"libp2p_test_bytes_total {go_float(v)}" in text
    assert len(block._COUNT_TEXT) == 3


def test_the_cache_stays_under_its_cap() -> None:
    block._COUNT_TEXT.clear()
    for start in range(0, 3 * block._COUNT_TEXT_CAP, 1000):
        block._count_texts(list(range(start, start + 1000)))
        assert len(block._COUNT_TEXT) <= block._COUNT_TEXT_CAP
