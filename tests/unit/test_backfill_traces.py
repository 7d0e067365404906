"""Backfilling pubsub trace files: the mapper's counts at each instant equal counts over the raw events
stamped up to it, the same event in two files counts once, late events and quiet stretches are said."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from exporter.app.cli import main
from exporter.protocol.pubsub_codec import TraceEvent, b58, encode_varint
from exporter.sources.pubsub_trace import read_trace_file
from tests.unit.test_backfill import check_openmetrics

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pubsub"
T = TraceEvent.Type
COUNTED = {  # metric -> the event type every one of which it counts (tracestat's definitions)
    "libp2p_pubsub_delivered_messages_total": T.DELIVER_MESSAGE,
    "libp2p_pubsub_duplicate_messages_total": T.DUPLICATE_MESSAGE,
    "libp2p_pubsub_topic_msg_published_total": T.PUBLISH_MESSAGE,
}


def _backfill(tmp: Path, *files: str, step: str = "0.2", capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    tmp.mkdir(exist_ok=True)
    out = tmp / "out.om"
    args = ["backfill", "--format", "openmetrics", "-o", str(out), "--pubsub.step", step]
    for f in files:
        args += ["--pubsub.file", f]
    assert main(args) == 0
    summary = capsys.readouterr().out
    return out.read_text(), summary


def _node(labels: str) -> str:
    m = re.search(r'node="([^"]*)"', labels)
    return m[1] if m else ""


def _independent(events: list[TraceEvent], until_ms: int) -> Counter[tuple[str, str]]:
    """(metric, node) -> events of its type stamped at or before ``until_ms`` (no mapper code)."""
    got: Counter[tuple[str, str]] = Counter()
    for e in events:
        if e.timestamp // 1_000_000 <= until_ms:
            for metric, kind in COUNTED.items():
                if e.type == kind:
                    got[(metric, b58(e.peerID))] += 1
    return got


def test_counts_at_every_instant_equal_the_events_stamped_up_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # node0.pb is one node's own PB tracer file: in order, so nothing is late and every instant is exact
    text, summary = _backfill(tmp_path, str(FIXTURES / "node0.pb"), capsys=capsys)
    events, _ = read_trace_file(FIXTURES / "node0.pb")
    points = check_openmetrics(text)
    instants = sorted({ts for series in points.values() for ts, _ in series})
    assert len(instants) >= 5 and "late" not in summary
    checked = 0
    for ts in instants:
        want = _independent(events, ts)
        for series, values in points.items():
            metric = series.split("{")[0]
            if metric in COUNTED:
                value = dict(values).get(ts)
                if value is not None:
                    assert value == want[(metric, _node(series))], (series, ts)
                    checked += 1
    assert checked >= 3 * len(instants)
    assert f"{len(events)} events of 1 traced node(s)" in summary


def test_the_same_events_in_several_files_count_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # node0.pb and node1.json hold events that traced.pb.gz holds too (the nodes traced to both)
    alone, _ = _backfill(tmp_path / "a", str(FIXTURES / "traced.pb.gz"), capsys=capsys)
    both, summary = _backfill(tmp_path / "b", str(FIXTURES), capsys=capsys)
    node0, _ = read_trace_file(FIXTURES / "node0.pb")
    node1, _ = read_trace_file(FIXTURES / "node1.json")
    assert f"{len(node0) + len(node1)} event(s) also in an earlier file" in summary

    def last(text: str) -> dict[str, float]:
        return {s: v[-1][1] for s, v in check_openmetrics(text).items()}

    assert last(both) == pytest.approx(last(alone))


def test_directories_give_their_trace_files_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, summary = _backfill(tmp_path, str(FIXTURES), capsys=capsys)
    assert "README" not in summary and "3 trace file(s)" in summary


def _event(peer: bytes, ts_ms: int, mid: bytes) -> TraceEvent:
    e = TraceEvent(type=T.PUBLISH_MESSAGE, peerID=peer, timestamp=ts_ms * 1_000_000)
    e.publishMessage.messageID = mid
    e.publishMessage.topic = "t"
    return e


def _write_pb(path: Path, events: list[TraceEvent]) -> None:
    path.write_bytes(b"".join(encode_varint(e.ByteSize()) + e.SerializeToString() for e in events))


def test_late_events_and_quiet_stretches_are_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    peer = b"\x00\x24\x08\x01\x12\x20" + bytes(range(32))
    base = 1_700_000_000_000
    events = [_event(peer, base + i * 1000, b"m%d" % i) for i in range(12)]
    events.append(_event(peer, base + 9500, b"behind"))  # 1.5 s behind: put back in order, not late
    events.append(_event(peer, base + 1500, b"late"))  # 9.5 s behind, past the reorder window: late
    events += [_event(peer, base + 30 * 60_000 + i * 1000, b"n%d" % i) for i in range(3)]  # 30 min later
    _write_pb(tmp_path / "t.pb", events)
    text, summary = _backfill(tmp_path, str(tmp_path / "t.pb"), step="1", capsys=capsys)
    assert "1 event(s) stamped before an instant already written" in summary
    assert "no trace events from" in summary and "nothing written in between" in summary
    points = check_openmetrics(text)
    published = next(v for s, v in points.items() if s.startswith("libp2p_pubsub_topic_msg_published_total"))
    stamps = [ts for ts, _ in published]
    assert all(not (base + 10 * 60_000 < ts < base + 30 * 60_000) for ts in stamps)  # nothing in the gap
    assert published[-1][1] == len(events)  # every event counted once, the late one too
    assert max(stamps) - min(stamps) > 30 * 60_000 - 5000


def test_trace_file_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.om"
    assert main(["backfill", "--format", "openmetrics", "-o", str(out), "--pubsub.file", "nope.pb"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["libp2p-exporter backfill: no such trace file: nope.pb"]
    assert main(["backfill", "--format", "openmetrics", "-o", str(out)]) == 2
    assert "nothing to backfill" in capsys.readouterr().err
    (tmp_path / "empty.pb").write_bytes(b"")
    assert (
        main(["backfill", "--format", "openmetrics", "-o", str(out), "--pubsub.file", str(tmp_path / "empty.pb")]) == 1
    )
    assert "no States with a timestamp or trace events" in capsys.readouterr().err
    assert not out.exists()


def test_long_files_report_how_far_they_are_read(tmp_path: Path) -> None:
    from exporter.sources.pubsub_trace import POSITION_EVERY, iter_trace_file

    peer = b"\x00\x24\x08\x01\x12\x20" + bytes(32)
    path = tmp_path / "long.pb"
    _write_pb(path, [_event(peer, 1_700_000_000_000 + i, b"m%d" % i) for i in range(3 * POSITION_EVERY + 5)])
    seen: list[int] = []
    assert sum(1 for _ in iter_trace_file(path, position=seen.append)) == 3 * POSITION_EVERY + 5
    assert len(seen) == 3 and seen == sorted(seen) and 0 < seen[-1] <= path.stat().st_size
