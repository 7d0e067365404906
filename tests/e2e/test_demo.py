"""``libp2p-exporter demo`` as a user runs it: a subprocess, real nodes, real wire, /metrics."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support import samples
from tests.support.procs import Proc, http_get, start_exporter, wait_for

pytest.importorskip("libp2p")


def totals(text: str) -> dict[str, float]:
    """Each metric summed over all its series (all nodes)."""
    return samples.totals(samples.series(text))


def by_node(text: str, name: str) -> dict[str, float]:
    return samples.per_label(samples.series(text), name, "node")


def test_demo_duration_30_serves_live_swarm_metrics_and_exits_0(tmp_path: Path, procs: list[Proc]) -> None:
    started = time.monotonic()
    proc = start_exporter(["demo", "--duration", "30", "--churn-every", "3", "--seed", "1"], tmp_path)
    procs.append(proc)

    def churned() -> dict[str, float] | None:
        t = totals(http_get(proc.url + "/metrics"))
        wanted = (
            "libp2p_connections",
            "libp2p_streams_opened_total",
            "libp2p_dht_peers",
            "libp2p_dht_queries_total",
            "libp2p_swarm_connections_closed_total",
            "libp2p_peers_disconnected_total",
            "libp2p_traffic_bytes_total",
            "libp2p_exporter_node_restarts_total",  # a node left and its slot rejoined with a new identity
        )
        return t if all(t.get(n, 0) > 0 for n in wanted) else None

    t = wait_for(churned, 28.0, "connections, streams, DHT peers and churn in /metrics", interval=0.5)
    text = http_get(proc.url + "/metrics")
    up = by_node(text, "libp2p_exporter_up")
    assert len(up) == 8 and sum(up.values()) >= 6  # eight slots; one may be between leave and join
    assert t["libp2p_streams"] > 0 and t["libp2p_events_total"] > 0
    assert "left" in proc.output()
    assert proc.proc.wait(timeout=45) == 0
    assert time.monotonic() - started < 45
    out = proc.output()
    assert "ws://127.0.0.1:" in out and "/metrics" in out
    assert "Traceback" not in out


def test_demo_stops_cleanly_on_ctrl_c_within_5s(tmp_path: Path, procs: list[Proc]) -> None:
    proc = start_exporter(["demo", "--nodes", "8"], tmp_path)
    procs.append(proc)
    wait_for(
        lambda: totals(http_get(proc.url + "/metrics")).get("libp2p_connections", 0) > 0, 30, "the swarm's connections"
    )
    t0 = time.monotonic()
    proc.proc.send_signal(signal.SIGINT)
    rc = proc.proc.wait(timeout=10)
    took = time.monotonic() - t0
    assert rc == 0, proc.output()
    assert took < 5.0, f"shutdown took {took:.1f}s"
    assert "Traceback" not in proc.output()


def test_demo_flags_reach_its_options() -> None:
    """Every web/protocol flag the demo accepts is used: the segment cap reaches its WebSocket sessions."""
    from exporter.app.cli import build_parser
    from exporter.app.demo import options_from_args
    from exporter.app.flags import settings_from_args

    args = build_parser().parse_args(["demo", "--protocol.max-segment-bytes", "4096", "--nodes", "3"])
    opts = options_from_args(args, settings_from_args(args).limits)
    assert (opts.max_segment_bytes, opts.nodes) == (4096, 3)
