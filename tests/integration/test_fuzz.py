"""The fuzz target, briefly: a fixed seed and a fixed number of inputs (``make fuzz`` runs it for hours).

The harness is bench/fuzz.py. Timing is not asserted here (CPU per byte is a bench figure); the
invariants are: nothing escapes decode/ingest/render, counters never decrease, series stay bounded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import fuzz


def test_a_fixed_budget_of_hostile_inputs_breaks_no_invariant(tmp_path: Path) -> None:
    stats = fuzz.run(seed=1, inputs=150, check_every=10, crash_dir=tmp_path)
    assert stats.failures == [], stats.failures
    assert (stats.inputs, stats.crashes, stats.violations) == (150, 0, 0)
    # The inputs reached every stage: messages decoded and ingested, damage found, expositions checked.
    assert stats.decoded > 500 and stats.segment_errors > 50 and stats.renders == 16
    assert set(stats.kinds) == {"wire", "file"}
    assert 0 < stats.max_series_per_node <= 50_000
    assert stats.counter_series > 100  # counters were there to compare
    assert stats.resilience_checks == 38  # one-byte flips of valid inputs, each losing only what it hit
    assert list(tmp_path.iterdir()) == []


def test_the_same_seed_gives_the_same_inputs() -> None:
    a = fuzz.run(seed=7, inputs=20)
    b = fuzz.run(seed=7, inputs=20)
    assert (a.bytes, a.decoded, a.segment_errors) == (b.bytes, b.decoded, b.segment_errors)


def test_an_escaping_exception_is_a_crash_with_its_input_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = fuzz.Harness(crash_dir=tmp_path)
    monkeypatch.setattr(harness.hub, "ingest", lambda *_: 1 / 0)
    kind, data = fuzz._seeds(fuzz.random.Random(1))[0]
    harness.one(kind, data, "fuzz-0", check=False)
    assert harness.stats.crashes == 1
    assert "ZeroDivisionError" in harness.stats.failures[0]
    assert [p.read_bytes() for p in tmp_path.iterdir()] == [data]


def test_a_decreasing_counter_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = fuzz.Harness()
    harness.nodes = ["fuzz-0"]
    body = b'# TYPE libp2p_fake_total counter\nlibp2p_fake_total{node="fuzz-0"} 3\n'
    monkeypatch.setattr(fuzz, "render", lambda *_: (body, "text/plain"))
    harness.counters[("libp2p_fake_total", (("node", "fuzz-0"),))] = 5.0
    with pytest.raises(AssertionError, match=r"went from 5\.0 to 3$"):
        harness.check_exposition()


def test_too_many_series_is_a_violation() -> None:
    harness = fuzz.Harness(series_limit=0)
    kind, data = fuzz._seeds(fuzz.random.Random(1))[2]
    harness.one(kind, data, "fuzz-0", check=True)
    assert harness.stats.violations == 1 and "over the limit of 0" in harness.stats.failures[0]


def test_a_flip_that_loses_an_intact_segment_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    kind, data = next((k, d) for k, d in fuzz._seeds(fuzz.random.Random(1)) if k == "wire" and len(d) > 10_000)
    msgs = fuzz._messages_of(kind, data)
    assert len(msgs) > 2
    real = fuzz.decode_segments
    monkeypatch.setattr(fuzz, "decode_segments", lambda *a, **k: type(real(*a, **k))(real(*a, **k).messages[1:], []))
    problem = fuzz.resilience_problem(fuzz.random.Random(2), "wire", msgs)
    assert problem is not None and "lost intact segment(s)" in problem


def _flipped_length_byte() -> tuple[int, int]:
    """Found by the resilience check (20,000 flips, seed 3): the file seed's segment 13, length byte 1 ^ 223.

    Returns (messages in the intact file, messages after the flip).
    """
    kind, data = fuzz._seeds(fuzz.random.Random(1))[-1]
    assert (kind, len(data)) == ("file", 101976)
    damaged = bytearray(data)
    damaged[17175] ^= 223
    return len(fuzz._messages_of(kind, data)), len(fuzz._messages_of(kind, bytes(damaged)))


def test_one_flipped_length_byte_loses_only_its_segment() -> None:
    """The damaged length pointed at a later segment boundary: skipping to it lost 20 intact segments."""
    assert _flipped_length_byte() == (45, 44)
