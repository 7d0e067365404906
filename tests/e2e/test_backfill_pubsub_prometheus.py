"""Backfilling gossipsub trace files into a real Prometheus: a real py-libp2p swarm's tracer files
(each node's JSON file, and the traced-gzip files holding the same events again) become blocks
through the CLI and promtool; queried at the trace's own times, the counters equal counts over the
events the nodes emitted, every panel of the pubsub board has data, and the pubsub rules evaluate."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("libp2p")
import trio

from exporter.protocol.pubsub_codec import TraceEvent, b58
from tests.support.panel_queries import panels_without_data, resolve_variables
from tests.support.procs import REPO, Prometheus, start_prometheus
from tests.support.pubsub_swarm import TOPIC, SwarmRun, run_traced_swarm

T = TraceEvent.Type
STEP = "0.5"  # --pubsub.step: the instants written, as a scrape interval
MACROS = {"$__rate_interval": "2s", "$__interval": "1s", "$__range": "10s"}
BOARD = REPO / "dashboards" / "json" / "libp2p-pubsub.json"
ALLOWED_EMPTY = {
    ("libp2p-pubsub", "Collector streams"): "the live collector's own streams: a file backfill runs no collector",
}


@dataclass
class Stack:
    prom: Prometheus
    run: SwarmRun
    summary: str
    start: float
    end: float


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work: Path = tmp_path_factory.mktemp("backfill-pubsub")
    (work / "traces").mkdir()
    # 12 messages 0.4 s apart: a few seconds of gossip with heartbeats, so rates have several points
    run = trio.run(functools.partial(run_traced_swarm, work / "traces", n=3, messages=12, spacing=0.4))
    files = [str(p) for p in run.files["json"] + run.files["gzip"]]
    # a 2 s message window (trace time): reach is observed as messages leave it, all along the trace,
    # not only when the input ends
    cmd = [sys.executable, "-m", "exporter", "backfill", "-o", str(work / "blocks"), "--pubsub.step", STEP]
    cmd += ["--pubsub.window", "2"]
    for f in files:
        cmd += ["--pubsub.file", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stamps = [e.timestamp / 1e9 for e in run.emitted]
    prom = start_prometheus(work / "prom", [], storage=work / "blocks", retention="1d")
    try:
        # the range ends past the last instant written (at most a step after the last event)
        yield Stack(prom, run, proc.stdout, min(stamps), max(stamps) + 2 * float(STEP))
    finally:
        prom.stop()


def test_summary_says_each_event_counted_once(stack: Stack) -> None:
    emitted = len(stack.run.emitted)
    assert f"{emitted} events of 3 traced node(s)" in stack.summary, stack.summary
    assert f"{emitted} event(s) also in an earlier file" in stack.summary  # the gzip files repeat them
    assert "blocks: 1 in" in stack.summary


def _by_node(prom: Prometheus, expr: str, at: float) -> dict[str, float]:
    result = prom.api("query", query=expr, time=f"{at:.3f}")["result"]
    return {s["metric"]["node"]: float(s["value"][1]) for s in result}


@pytest.mark.parametrize(
    ("metric", "kind"),
    [
        ("libp2p_pubsub_delivered_messages_total", T.DELIVER_MESSAGE),
        ("libp2p_pubsub_duplicate_messages_total", T.DUPLICATE_MESSAGE),
        ("libp2p_pubsub_topic_msg_published_total", T.PUBLISH_MESSAGE),
        ("libp2p_pubsub_rejected_messages_total", T.REJECT_MESSAGE),
    ],
)
def test_counters_equal_the_events_the_nodes_emitted(stack: Stack, metric: str, kind: int) -> None:
    want = Counter(b58(e.peerID) for e in stack.run.emitted if e.type == kind)
    assert sum(want.values()) > 0
    total = f'sum by (node) ({metric}{{instance="backfill"}})'
    assert _by_node(stack.prom, total, stack.end) == pytest.approx(dict(want))
    # increase() from the first written instant to the last counts every event stamped after the
    # first instant, a series' first counts included (its 0 at the instant before it appeared). The
    # window is exactly first..last instant, so Prometheus extrapolates nothing, as the capture test does.
    first, last = _instants(stack)
    after = Counter(b58(e.peerID) for e in stack.run.emitted if e.type == kind and e.timestamp // 10**6 > first)
    expr = f'sum by (node) (increase({metric}{{instance="backfill"}}[{last - first}ms]))'
    grown = _by_node(stack.prom, expr, last / 1000)
    assert {n: v for n, v in grown.items() if v} == {n: float(c) for n, c in after.items()}


def _instants(stack: Stack) -> tuple[int, int]:
    """The first and last instant the backfill wrote (ms), from a series written at every one."""
    result = stack.prom.api(
        "query", query='libp2p_pubsub_traced_nodes{instance="backfill"}[1d]', time=f"{stack.end + 60:.3f}"
    )
    stamps = [round(float(t) * 1000) for t, _ in result["result"][0]["values"]]
    return stamps[0], stamps[-1]


def test_mesh_at_the_end_is_what_the_events_left(stack: Stack) -> None:
    mesh: dict[str, set[bytes]] = {}
    for e in sorted(stack.run.emitted, key=lambda e: e.timestamp):
        node = mesh.setdefault(b58(e.peerID), set())
        if e.type == T.GRAFT and e.graft.topic == TOPIC:
            node.add(e.graft.peerID)
        elif e.type == T.PRUNE and e.prune.topic == TOPIC:
            node.discard(e.prune.peerID)
        elif e.type == T.LEAVE and e.leave.topic == TOPIC:
            node.clear()
    got = _by_node(stack.prom, f'libp2p_pubsub_mesh_peer_counts{{topic="{TOPIC}"}}', stack.end)
    want = {n: float(len(p)) for n, p in mesh.items() if n in got}
    assert got == want and len(got) >= 2


def test_every_pubsub_panel_has_data_over_the_trace(stack: Stack) -> None:
    dash = json.loads(BOARD.read_text())
    variables = resolve_variables(stack.prom, dash, start=f"{stack.start:.3f}", end=f"{stack.end:.3f}")
    assert variables["instance"] == ["backfill"] and len(variables["node"]) == 3 and variables["topic"] == [TOPIC]
    checked, failures = panels_without_data(
        stack.prom, BOARD, variables, MACROS, start=stack.start, end=stack.end, step="0.5", allowed_empty=ALLOWED_EMPTY
    )
    assert checked >= 14
    assert not failures, "\n".join(failures)


def test_pubsub_rules_evaluate_over_the_trace(stack: Stack) -> None:
    groups = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules" / "libp2p-pubsub.yml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    with_data = set()
    for rule in rules:
        data = stack.prom.api(
            "query_range", query=rule["expr"], start=f"{stack.start:.3f}", end=f"{stack.end:.3f}", step="0.5"
        )
        if data["result"]:
            with_data.add(rule["alert"])
    assert len(rules) == 3
    # the swarm's meshes (2 peers) sit under gossipsub's D_lo=5: the collapse rule's condition holds
    assert "Libp2pPubsubMeshCollapse" in with_data
