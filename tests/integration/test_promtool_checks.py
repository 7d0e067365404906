"""promtool, the real consumer, reads what the exporter writes: the exposition (`promtool check metrics`)
and backfill's OpenMetrics file and blocks (`promtool tsdb create-blocks-from openmetrics`).

The unit tier checks the same output's structure in process; these tests start promtool.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app.cli import main
from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.catalogue import Family, Writer
from exporter.model.histogram import Histogram
from exporter.pipeline.hub import Hub
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.sinks.openmetrics_file import TimestampedOpenMetrics
from exporter.sinks.prometheus import Exposition
from exporter.sources.capture import write_capture
from tests.support.procs import promtool


def fleet(nodes: int = 3, states: int = 6) -> Hub:
    hub = build_hub()
    for i in range(nodes):
        synthetic = SyntheticNode(connections=20 + 10 * i, streams_per_conn=2, seed=i + 1)
        for _ in range(states):
            for msg in decode_segments(encode_segment(synthetic.state())).messages:
                hub.ingest(f"node-{i}", msg)
            synthetic.step()
    return hub


def test_the_whole_exposition_passes_promtool() -> None:
    text = Exposition(fleet()).metrics().decode()
    assert 'node="node-2"' in text and "\nprocess_resident_memory_bytes " in text
    res = promtool("check", "metrics", stdin=text)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


def _metric(name: str, kind: str, value: float, **labels: str) -> Callable[[Writer], None]:
    family = Family(name, kind, "doc")
    if kind == "histogram":
        hist = Histogram((1.0,))
        hist.counts, hist.count, hist.total = [int(value), 0], int(value), value / 2
        return lambda out: out.histogram(family, hist, labels)
    if kind == "counter":
        return lambda out: out.counter(family, value, labels)
    return lambda out: out.gauge(family, value, labels)


def _add(w: TimestampedOpenMetrics, scope: str, ts_ms: int, writes: list[Callable[[Writer], None]]) -> None:
    at = w.instant(scope, ts_ms)
    for write in writes:
        write(at)
    at.close()


def test_zeros_for_vanished_gauges_and_born_counters_build_blocks(tmp_path: Path) -> None:
    w = TimestampedOpenMetrics(tmp_path, extra_labels={"job": "j"})
    g, c, h = "gauge", "counter", "histogram"
    _add(
        w, "a", 1000, [_metric("g", g, 1, node="a", k="x"), _metric("c", c, 1, node="a"), _metric("h", h, 1, node="a")]
    )
    _add(w, "b", 1500, [_metric("g", g, 5, node="b", k="x")])
    _add(
        w, "a", 2000, [_metric("g", g, 2, node="a", k="y"), _metric("c", c, 2, node="a"), _metric("h", h, 2, node="a")]
    )
    _add(w, "a", 3000, [_metric("g", g, 3, node="a", k="y"), _metric("c", c, 3, node="a"), _metric("c", c, 1, x="1")])
    with open(tmp_path / "out.om", "w") as fh:
        w.write(fh)
    assert w.vanished_zeros == 1 and w.birth_zeros == 1
    res = promtool("tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "out.om"), str(tmp_path / "blocks"))
    assert res.returncode == 0, res.stderr
    assert list((tmp_path / "blocks").glob("*/meta.json"))


def test_several_nodes_merge_by_time_into_one_set_of_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Interleaved instants: the hub-wide series (no node label) must still only go forward.
    for name, start_ms, seed in (("a", 1_700_000_000_000, 1), ("b", 1_700_000_000_500, 2)):
        synthetic = SyntheticNode(connections=6, streams_per_conn=2, buckets=3, seed=seed, start_ms=start_ms)
        write_capture(tmp_path / f"{name}.mock", list(synthetic.messages(8)))
    code = main(["backfill", str(tmp_path), "-o", str(tmp_path / "blocks")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "backfilled 2 file(s) of 2 node(s): 18 States written" in out
    written = re.search(r"samples: (\d+)", out)
    assert written is not None and re.search(r"blocks: 1 in .*\(promtool wrote (\d+) samples\)", out)
    assert f"promtool wrote {written.group(1)} samples" in out
