"""Backfill into a real Prometheus: the observer-toolkit sample capture and a live-mode recording
become TSDB blocks (through the real CLI and promtool), a fresh Prometheus serves them, and queries
at the captures' own times equal independent computations over the raw States; every dashboard
panel has data over the capture, and every alert rule's expression evaluates over it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app.config import build
from exporter.app.live import run_live
from exporter.protocol import pb
from tests.support import independent as ind
from tests.support.introspect_server import IntrospectServer
from tests.support.panel_queries import LIVE_ONLY, dashboards, panels_without_data, resolve_variables
from tests.support.procs import FIXTURE, REPO, Prometheus, start_prometheus

# Both captures have States 1-2 s apart (the recording's synthetic node steps 1 s per State).
MACROS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m"}
# Nothing scraped these (a capture of other software, a recording no Prometheus scraped): no scrape
# journal, so nothing measured the exporter's own side. With one, these have data too
# (tests/e2e/test_backfill_recorded_incident.py).
NOT_BACKFILLED = {
    **LIVE_ONLY,
    ("libp2p-exporter-health", "Scrape duration"): "no scrape journal: nobody scraped while this was recorded",
    ("libp2p-exporter-health", "Scrape target up"): "no scrape journal: nobody scraped while this was recorded",
}
# Per node: panels its data cannot fill, with the reason.
ALLOWED_EMPTY: dict[str, dict[tuple[str, str], str]] = {
    "sample-1min": {
        **NOT_BACKFILLED,
        ("libp2p-connections", "Handshake latency"): "the observer-toolkit capture sets no upgraded_ts",
        ("libp2p-dht", "Query success ratio"): "the capture's DHT query gauges stay 0 (queries come as events): 0/0",
    },
    "node-x": NOT_BACKFILLED,
}
RULES = REPO / "deploy" / "prometheus" / "rules"


@dataclass
class Stack:
    prom: Prometheus
    states: dict[str, list[pb.State]]  # node -> its States, from the raw files
    summary: str
    seconds: float


async def _record(directory: Path) -> None:
    """A live-mode recording (``--record``) of the scripted introspection server, with churn."""
    server = IntrospectServer()
    await server.start()
    try:
        server.add("", connections=8, peerstore=True)  # so the peerstore board has history too
        cfg = build(
            {"record_dir": str(directory), "interval": 0.1, "listen": "127.0.0.1:0"},
            [f"node-x={server.url()}"],
            None,
            env={},
        )
        cfg = replace(cfg, options=replace(cfg.options, read_timeout_s=2.0))
        assert await run_live(cfg, duration=1.5) == 0
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not FIXTURE.exists():
        pytest.fail(f"fixture missing from the repository: {FIXTURE}")
    work: Path = tmp_path_factory.mktemp("backfill")
    asyncio.run(_record(work / "rec"))
    recordings = sorted((work / "rec").rglob("*.libp2p.trace"))
    assert len(recordings) == 1
    blocks = work / "blocks"
    started = time.monotonic()
    cmd = [sys.executable, "-m", "exporter", "backfill", str(FIXTURE), str(work / "rec"), "--output", str(blocks)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO)})
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    states = {
        "sample-1min": ind.states(ind.decoded(FIXTURE)),
        "node-x": ind.states(ind.decoded(recordings[0])),
    }
    # Prometheus keeps blocks within its retention of the newest block: 2020 and now are years apart.
    prom = start_prometheus(work / "prom", [], storage=blocks, retention="30y")
    try:
        yield Stack(prom, states, proc.stdout, seconds)
    finally:
        prom.stop()


def _at(prom: Prometheus, expr: str, ts_ms: int) -> list[dict[str, Any]]:
    return prom.api("query", query=expr, time=f"{ts_ms / 1000:.3f}")["result"]


def test_summary_counts_what_prometheus_serves(stack: Stack) -> None:
    out = stack.summary
    assert "backfilled 2 file(s) of 2 node(s)" in out, out
    written = int(re.search(r"(\d+) States written", out).group(1))  # type: ignore[union-attr]
    assert written == sum(len(s) for s in stack.states.values())
    samples = int(re.search(r"samples: (\d+)", out).group(1))  # type: ignore[union-attr]
    assert f"promtool wrote {samples} samples" in out
    series = int(re.search(r"series: (\d+)", out).group(1))  # type: ignore[union-attr]
    lo, hi = min(s[0].instant_ts for s in stack.states.values()), max(s[-1].instant_ts for s in stack.states.values())
    first = datetime.fromtimestamp(lo / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert f"time range: {first}Z .. " in out
    # Every series the file holds is in Prometheus, over the whole range.
    served = stack.prom.api(
        "series", **{"match[]": '{job="libp2p-exporter"}', "start": str(lo / 1000), "end": str(hi / 1000)}
    )
    assert len(served) == series
    # One sample per State and node.
    for node, seq in stack.states.items():
        span = seq[-1].instant_ts - seq[0].instant_ts
        got = _at(stack.prom, f'count_over_time(libp2p_peers{{node="{node}"}}[{span}ms])', seq[-1].instant_ts)
        assert float(got[0]["value"][1]) == len(seq), node


@pytest.mark.parametrize("node", ["sample-1min", "node-x"])
def test_gauges_at_each_state_equal_the_raw_states(stack: Stack, node: str) -> None:
    seq = stack.states[node]
    assert len(seq) >= 8
    for st in seq:
        peers = _at(
            stack.prom, f'libp2p_peers{{node="{node}",job="libp2p-exporter",instance="backfill"}}', st.instant_ts
        )
        assert [float(r["value"][1]) for r in peers] == [ind.peers(st)], st.instant_ts
        got = _at(stack.prom, f'sum by (status) (libp2p_connections{{node="{node}"}})', st.instant_ts)
        per_status = {r["metric"]["status"]: float(r["value"][1]) for r in got}
        expected = ind.connections_per_status(st)
        assert {k: v for k, v in per_status.items() if v} == {k: float(n) for k, n in expected.items()}, st.instant_ts


@pytest.mark.parametrize("node", ["sample-1min", "node-x"])
def test_increase_over_the_capture_equals_the_opens_and_closes_seen(stack: Stack, node: str) -> None:
    seq = stack.states[node]
    span = seq[-1].instant_ts - seq[0].instant_ts
    end = seq[-1].instant_ts
    for metric, count in (
        ("libp2p_swarm_connections_opened_total", ind.opened_connections),
        ("libp2p_swarm_connections_closed_total", ind.closed_connections),
    ):
        got = _at(stack.prom, f'sum(increase({metric}{{node="{node}"}}[{span}ms]))', end)
        expected = count(seq) - count(seq[:1])
        assert expected > 0, f"{node}: no {metric} to count over the capture"
        assert float(got[0]["value"][1]) == expected, metric


def _range(stack: Stack, node: str = "sample-1min") -> tuple[float, float]:
    seq = stack.states[node]
    return seq[0].instant_ts / 1000, seq[-1].instant_ts / 1000


# The observer-toolkit capture predates the peerstore extension: its board is proven on the recording.
CASES = [
    (p, n)
    for n in ("sample-1min", "node-x")
    for p in dashboards()
    if (p.stem, n) != ("libp2p-peerstore", "sample-1min")
]


@pytest.mark.parametrize(("path", "node"), CASES, ids=lambda v: getattr(v, "stem", v))
def test_every_panel_has_data_over_the_capture(stack: Stack, path: Path, node: str) -> None:
    start, end = _range(stack, node)
    variables = resolve_variables(stack.prom, json.loads(path.read_text()), start=str(start), end=str(end))
    assert variables["instance"] == ["backfill"] and variables["node"] == [node]
    _, failures = panels_without_data(
        stack.prom, path, variables, MACROS, start=start, end=end, step="2", allowed_empty=ALLOWED_EMPTY[node]
    )
    assert not failures, "\n".join(failures)


def test_allow_list_names_real_panels() -> None:
    titles = {(p.stem, panel["title"]) for p in dashboards() for panel in json.loads(p.read_text())["panels"]}
    for allowed in ALLOWED_EMPTY.values():
        assert set(allowed) <= titles


def test_every_alert_expression_evaluates_over_the_capture(stack: Stack) -> None:
    start, end = _range(stack)
    with_data = set()
    rules = [
        r for f in sorted(RULES.glob("*.yml")) for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]
    ]
    assert len(rules) >= 10
    for rule in rules:
        data = stack.prom.api("query_range", query=rule["expr"], start=f"{start:.3f}", end=f"{end:.3f}", step="2")
        if data["result"]:
            with_data.add(rule["alert"])
    # The capture's node has 4 peers or fewer throughout: the low-peer alert's condition holds over it.
    assert max(ind.peers(st) for st in stack.states["sample-1min"]) < 10
    assert "Libp2pPeerCountLow" in with_data
    assert "Libp2pExporterTargetDown" not in with_data  # no scrape, no `up` series: nothing to fire on
