"""The scrape journal and the collector's trace recording: what live mode keeps beside its recordings
for a backfill, written whole, rotated, read back with damage counted, never stopping the exporter."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from exporter.app.cli import main
from exporter.protocol.pubsub_codec import TraceEvent
from exporter.sinks.scrape_journal import SUFFIX, ScrapeJournal, read_journal
from exporter.sources.pubsub_recording import TraceRecorder, find_recorded
from exporter.sources.pubsub_trace import read_trace_file
from tests.unit.test_backfill import check_openmetrics


def _lines(directory: Path) -> list[dict[str, object]]:
    return [json.loads(line) for f in sorted(directory.glob(f"*{SUFFIX}")) for line in f.read_text().splitlines()]


def test_each_prometheus_scrape_is_one_line_with_its_outcome(tmp_path: Path) -> None:
    journal = ScrapeJournal(tmp_path, extra=lambda: {"collector": {"streams": 2}})
    journal.scraped(1700000000.1234, "10", 0.004, 0.003)  # answered in time
    journal.scraped(1700000001.0, "0.5", 0.9, 0.8)  # the body was ready after the scraper gave up
    journal.scraped(1700000002.0, "10", 0.01, None)  # building the body failed
    journal.scraped(1700000003.0, None, 0.01, 0.01)  # curl, not a Prometheus: not journaled
    journal.scraped(1700000004.0, "soon", 0.01, 0.01)  # a header that is not a number: not journaled
    journal.close()
    assert _lines(tmp_path) == [
        {"ts": 1700000000123, "up": 1, "scrape_duration_seconds": 0.003, "collector": {"streams": 2}},
        {"ts": 1700000001000, "up": 0, "scrape_duration_seconds": 0.8, "collector": {"streams": 2}},
        {"ts": 1700000002000, "up": 0, "collector": {"streams": 2}},
    ]


def test_journal_rotates_by_size_and_a_torn_line_is_counted(tmp_path: Path) -> None:
    journal = ScrapeJournal(tmp_path, max_bytes=200)
    for i in range(10):
        journal.scraped(1700000000 + i, "10", 0.01, 0.002)
    journal.close()
    files = sorted(tmp_path.glob(f"*{SUFFIX}"))
    assert len(files) > 1 and all(f.stat().st_size <= 200 for f in files)
    assert len(_lines(tmp_path)) == 10
    with open(files[-1], "a") as fh:
        fh.write('{"ts": 17000')  # a crash mid-line
    read = read_journal(files[-1])
    assert read.damaged == 1 and read.entries


def test_an_unwritable_journal_turns_off_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    journal = ScrapeJournal(blocker / "sub")  # a directory under a file cannot be made
    for _ in range(3):
        journal.scraped(1700000000, "10", 0.01, 0.01)
    assert journal.failed and len([r for r in caplog.records if "journal off" in r.getMessage()]) == 1


def _events(n: int, start: int = 0) -> list[TraceEvent]:
    peer = b"\x00\x24\x08\x01\x12\x20" + bytes(32)
    return [
        TraceEvent(type=TraceEvent.Type.JOIN, peerID=peer, timestamp=(1_700_000_000 + i) * 10**9)
        for i in range(start, start + n)
    ]


def test_recorded_traces_read_back_even_before_they_are_finished(tmp_path: Path) -> None:
    rec = TraceRecorder(tmp_path, max_bytes=1 << 20)
    rec.write(_events(5))
    [path] = find_recorded([str(tmp_path)])
    events, stats = read_trace_file(path)  # still open: sync-flushed, so whole events read
    assert len(events) == 5 and set(stats.errors) <= {"truncated"}
    rec.write(_events(5, 5))
    rec.close()
    events, stats = read_trace_file(path)
    assert [e.timestamp for e in events] == [e.timestamp for e in _events(10)] and not stats.errors
    assert len(gzip.decompress(path.read_bytes())) > 0  # a complete gzip file once closed


def test_recorded_traces_rotate(tmp_path: Path) -> None:
    rec = TraceRecorder(tmp_path, max_bytes=50)
    for i in range(4):
        rec.write(_events(3, 3 * i))
    rec.close()
    files = find_recorded([str(tmp_path)])
    assert len(files) >= 2
    assert sum(len(read_trace_file(f)[0]) for f in files) == 12


def test_backfill_writes_the_journal_at_its_own_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "rec"
    journal = ScrapeJournal(rec, extra=lambda: {"collector": {"streams": 1, "accepted": 3, "errors": {"gzip": 1}}})
    journal.scraped(1700000000.0, "10", 0.01, 0.002)
    journal.scraped(1700000001.0, "10", 0.01, None)  # failed: up 0 and no duration (not a made-up 0)
    journal.scraped(1700000002.0, "10", 0.01, 0.004)
    journal.close()
    out = tmp_path / "out.om"
    assert main(["backfill", str(rec), "--format", "openmetrics", "-o", str(out)]) == 0
    assert "scrape journal: 1 file(s), 3 scrapes written (2 answered in time, 1 not)" in capsys.readouterr().out
    points = check_openmetrics(out.read_text())
    labels = 'job="libp2p-exporter",instance="backfill"'
    assert points[f"up{{{labels}}}"] == [(1700000000000, 1.0), (1700000001000, 0.0), (1700000002000, 1.0)]
    assert points[f"libp2p_exporter_scrape_duration_seconds{{{labels}}}"] == [
        (1700000000000, 0.002),
        (1700000002000, 0.004),
    ]
    assert points[f"libp2p_pubsub_collector_streams{{{labels}}}"][-1] == (1700000002000, 1.0)
    assert points[f'libp2p_pubsub_collector_errors_total{{reason="gzip",{labels}}}'][-1] == (1700000002000, 1.0)


def test_the_server_journals_prometheus_scrapes_of_metrics_only(tmp_path: Path) -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from exporter.pipeline.hub import Hub
    from exporter.server import TIMEOUT_HEADER, build_app

    journal = ScrapeJournal(tmp_path)

    async def scrape() -> None:
        async with TestClient(TestServer(build_app(Hub(), on_scrape=journal.scraped))) as client:
            for headers in ({TIMEOUT_HEADER: "10"}, {}, {TIMEOUT_HEADER: "10"}):
                assert (await client.get("/metrics", headers=headers)).status == 200
            assert (await client.get("/healthz", headers={TIMEOUT_HEADER: "10"})).status == 200

    asyncio.run(scrape())
    journal.close()
    lines = _lines(tmp_path)
    assert [line["up"] for line in lines] == [1, 1]
    assert all(0 < float(line["scrape_duration_seconds"]) < 10 for line in lines)  # type: ignore[arg-type]


def test_entries_that_are_not_what_the_journal_writes_are_damage(tmp_path: Path) -> None:
    path = tmp_path / f"j{SUFFIX}"
    good = {"ts": 1700000000000, "up": 1, "scrape_duration_seconds": 0.01, "collector": {"streams": 1}}
    bad = [
        {"ts": -5, "up": 1},
        {"ts": 1.5, "up": 1},
        {"ts": 1700000000000, "up": True},
        {"ts": 1700000000000, "up": 2},
        {"ts": 1700000000000, "up": 1, "scrape_duration_seconds": "fast"},
        {"ts": 1700000000000, "up": 1, "collector": {"streams": "many"}},
        {"ts": 1700000000000, "up": 1, "collector": {"errors": {"gzip": None}}},
        [1, 2],
    ]
    path.write_text("\n".join(json.dumps(e) for e in [good, *bad]) + "\n" + "x" * 70_000 + "\n")
    read = read_journal(path)
    assert read.entries == [good] and read.damaged == len(bad) + 1


def test_an_unreadable_journal_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    # /proc/self/mem fails with EIO at offset 0, for root too: a journal that cannot be read
    (rec / f"exporter{SUFFIX}").symlink_to("/proc/self/mem")
    out = tmp_path / "o.om"
    assert main(["backfill", str(rec), "--format", "openmetrics", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("libp2p-exporter backfill: cannot read "), err
    assert not out.exists()


def test_a_journal_that_fails_never_fails_the_scrape(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("collector gone")

    journal = ScrapeJournal(tmp_path, extra=broken)
    journal.scraped(1700000000, "10", 0.01, 0.01)  # returns: the scrape is answered all the same
    journal.scraped(1700000001, "10", 0.01, 0.01)
    assert journal.failed and not list(tmp_path.glob(f"*{SUFFIX}"))
    assert len([r for r in caplog.records if "journal off" in r.getMessage()]) == 1


def test_a_restart_within_the_same_second_never_reuses_a_file(tmp_path: Path) -> None:
    first, second = ScrapeJournal(tmp_path), ScrapeJournal(tmp_path)  # both start at sequence 1
    first.scraped(1700000000, "10", 0.01, 0.01)
    second.scraped(1700000001, "10", 0.01, 0.01)
    first.close()
    second.close()
    assert not first.failed and not second.failed
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2 and len(_lines(tmp_path)) == 2
    one, two = TraceRecorder(tmp_path), TraceRecorder(tmp_path)
    one.write(_events(1))
    two.write(_events(1, 1))
    one.close()
    two.close()
    assert len(find_recorded([str(tmp_path)])) == 2


def test_a_recorder_that_cannot_write_stops_once_and_the_collector_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    rec = TraceRecorder(blocker)  # its pubsub/ directory would sit under a file
    for i in range(3):
        rec.write(_events(1, i))  # returns each time: the collector's callback never raises
    rec.close()
    assert rec.failed and rec.events == 0
    assert len([r for r in caplog.records if "recording off" in r.getMessage()]) == 1
