"""Session options for live-source tests: short intervals and timeouts so a test takes seconds."""

from __future__ import annotations

from exporter.sources.options import SessionOptions

FAST = SessionOptions(
    interval_ms=100,
    stale_intervals=5,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    healthy_after_s=0.0,
    read_timeout_s=2.0,
    heartbeat_s=5.0,
    handshake_timeout_s=2.0,
)
