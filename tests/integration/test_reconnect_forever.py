"""Issue 13, defect 1: a target must be retried after any number of failures, and nothing unexpected
may end its session task."""

from __future__ import annotations

import logging
import random

import pytest

from exporter.app.runtime import build_hub
from exporter.sources.buffer import Backoff
from exporter.sources.options import SessionOptions
from exporter.sources.websocket import Session
from tests.support.procs import free_port, until

TINY = SessionOptions(backoff_initial_s=0.001, backoff_max_s=0.002, connect_timeout_s=2.0, heartbeat_s=None)


def test_backoff_stays_at_the_cap_after_thousands_of_attempts() -> None:
    b = Backoff(0.001, 0.002, 2.0, 0.2, random.Random(3))
    b.attempt = 5000  # 2.0 ** 5000 overflows a float
    delays = [b.next() for _ in range(10)]
    assert all(0.0016 <= d <= 0.002 for d in delays), delays
    slow = Backoff(0.5, 30.0, 1.0001, 0.0)
    slow.attempt = 10**7
    assert slow.next() == 30.0


async def test_session_keeps_retrying_a_closed_port_past_1024_attempts() -> None:
    hub = build_hub(live=True)
    session = Session(hub, "n", f"ws://127.0.0.1:{free_port()}/introspect", TINY)
    session.backoff.attempt = 1020  # as after ~8.5 h of outage at the 30 s cap
    task = session.start()
    try:
        await until(lambda: session.stats.failures["connect"] >= 20, 20.0, "20 failed attempts")
        assert not task.done()
        assert session.backoff.attempt <= 1100
    finally:
        await session.close()


async def test_an_unexpected_exception_outside_the_attempt_is_logged_once_and_retried(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = build_hub(live=True)
    session = Session(hub, "n", f"ws://127.0.0.1:{free_port()}/introspect", TINY)
    calls = 0

    def broken_next() -> float:
        nonlocal calls
        calls += 1
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(session.backoff, "next", broken_next)
    monkeypatch.setattr(Session, "RETRY_AFTER_BUG_S", 0.001, raising=False)
    caplog.set_level(logging.DEBUG, logger="exporter.sources.websocket")
    task = session.start()
    try:
        await until(lambda: calls >= 5, 20.0, "five retries after the injected error")
        assert not task.done()
    finally:
        await session.close()
    logged = [
        r for r in caplog.records if "injected" in r.getMessage() or (r.exc_info and "injected" in str(r.exc_info[1]))
    ]
    errors = [r for r in logged if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in logged]
