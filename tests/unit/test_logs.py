"""--log.format logfmt|json: one record per line whatever a remote peer puts in it; repeated warnings summarised."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from exporter.logs import RateLimitedLog, configure, escape, logfmt_value

HOSTILE = 'node "a"\nts=2026-01-01T00:00:00.000Z level=error msg="forged"\r\x1b[31m\x00\u2028\u0085 end'


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream, logging.getLogger("exporter.test")
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_logfmt_line(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    configure("info", "logfmt", stream)
    log.info("serving on %s", "127.0.0.1:9797", extra={"fields": {"address": "127.0.0.1:9797", "tls": True}})
    log.debug("not shown at info")
    line = stream.getvalue()
    assert re.fullmatch(
        r'ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info logger=exporter\.test msg="serving on 127\.0\.0\.1:9797" '
        r"address=127\.0\.0\.1:9797 tls=True\n",
        line,
    ), line


def test_remote_text_cannot_forge_a_line(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    configure("info", "logfmt", stream)
    log.warning("node %s: reconnecting", HOSTILE)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert not any(ch in out[:-1] for ch in "\r\x1b\x00\u2028\u0085")
    assert 'msg="node node \\"a\\"\\nts=2026' in out
    assert "\\x1b[31m\\x00\\u2028\\x85 end" in out


def test_json_round_trips_and_stays_ascii(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    configure("warn", "json", stream)
    log.info("hidden")
    log.error("node %s", HOSTILE)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.isascii()
    record = json.loads(out)
    assert record["msg"] == f"node {HOSTILE}"
    assert (record["level"], record["logger"]) == ("error", "exporter.test")


def test_an_exception_stays_on_its_line(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    configure("info", "logfmt", stream)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("unexpected")
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert 'err="RuntimeError: boom\\nsecond line"' in out and "stack=" in out


def test_bad_level_or_format() -> None:
    with pytest.raises(ValueError, match=re.escape("--log.format: 'xml' is not one of logfmt, json")):
        configure("info", "xml")
    with pytest.raises(ValueError, match=re.escape("--log.level")):
        configure("loud", "json")


def test_escape_and_bare_values() -> None:
    assert logfmt_value("plain") == "plain"
    assert logfmt_value("two words") == '"two words"'
    assert logfmt_value("") == '""'
    assert logfmt_value("a=b") == '"a=b"'
    assert escape("\U000e0041") == "\\U000e0041"  # a tag character: invisible, so escaped


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_17_minute_outage_logs_a_handful_of_lines(caplog: pytest.LogCaptureFixture) -> None:
    """The demo's 214 reconnect warnings in 17 minutes, one node: first, then one summary per 5 minutes."""
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("exporter.test.rl"), interval=300.0, clock=clock)
    logged = 0
    with caplog.at_level(logging.WARNING):
        for i in range(214):
            clock.now = i * (17 * 60 / 214)
            logged += limited.warning("node a", "node a: connect failed; reconnecting")
        limited.flush()
    messages = [r.getMessage() for r in caplog.records]
    summaries = [m for m in messages if "more like this suppressed" in m]
    suppressed = sum(int(re.search(r"(\d+) more like this", m).group(1)) for m in summaries)  # type: ignore[union-attr]
    assert logged == 4  # at 0, ~300, ~600 and ~900 s
    assert logged + suppressed == 214  # nothing is lost, only counted
    assert len(messages) == 8  # 4 warnings, 3 summaries between them, 1 at flush
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_keys_are_bounded_and_forget_reports(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("exporter.test.rl"), interval=60.0, max_keys=3, clock=clock)
    with caplog.at_level(logging.WARNING):
        limited.warning("a", "a failed")
        limited.warning("a", "a failed")
        for key in "bcdef":
            limited.warning(key, f"{key} failed")
        assert len(limited._seen) == 3
        assert any(r.getMessage() == "a: 1 more like this suppressed in the last 0s" for r in caplog.records)
        limited.warning("f", "f failed")
        limited.forget("f")  # reconnected: the count is reported and the next failure is logged again
        assert caplog.records[-1].getMessage().startswith("f: 1 more like this suppressed")
        assert limited.warning("f", "f failed")


def test_a_node_sending_damage_all_the_time_is_not_a_log_flood(caplog: pytest.LogCaptureFixture) -> None:
    from exporter.pipeline.hub import Hub
    from exporter.protocol.framing import SegmentError

    hub = Hub()
    clock = Clock()
    hub._segment_log._clock = clock
    with caplog.at_level(logging.WARNING, logger="exporter.pipeline.hub"):
        for i in range(100):
            clock.now = i * 0.1
            hub.errors("evil", [SegmentError(i, "checksum", "bad checksum", 10)])
        hub.errors("evil", [SegmentError(0, "length", "length over the cap", 10)])
        clock.now = 61.0
        hub.errors("evil", [SegmentError(0, "checksum", "bad checksum", 10)])
    lines = [r.getMessage() for r in caplog.records]
    assert hub.nodes["evil"].segment_errors == {"checksum": 101, "length": 1}  # every stretch counted
    assert len(lines) == 4, lines  # checksum, length, the summary of 99, checksum again
    assert lines[2] == "evil checksum: 99 more like this suppressed in the last 61s"
