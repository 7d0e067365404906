"""An incident recorded by live mode, whole, becomes history in a second Prometheus.

Live mode (a subprocess) records a node (the scripted introspection server) with ``--record`` while
running the pubsub collector that a real py-libp2p swarm traces to, and a real Prometheus scrapes
it. ``backfill`` on the recording directory alone (introspection recordings, the collector's trace
files, the exporter's scrape journal) builds blocks; a fresh Prometheus on them serves every panel
of every shipped dashboard over the recorded range, and the exporter's own series (up, scrape
duration, collector streams) equal, sample for sample, what the scraping Prometheus stored.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytest.importorskip("libp2p")
import trio

from tests.support.introspect_server import IntrospectServer, ServerThread
from tests.support.panel_queries import LIVE_ONLY, dashboards, panels_without_data, resolve_variables
from tests.support.procs import REPO, Prometheus, http_get, scrape_job, start_exporter, start_prometheus, wait_for
from tests.support.pubsub_swarm import SwarmRun, run_traced_swarm

JOB = "libp2p-exporter"  # the job the dashboards and rules select
MACROS = {"$__rate_interval": "4s", "$__interval": "1s", "$__range": "20s"}
EXPORTER_SERIES = ["up", "libp2p_exporter_scrape_duration_seconds", "libp2p_pubsub_collector_streams"]


@dataclass
class Incident:
    live: Prometheus  # scraped the exporter while it recorded
    history: Prometheus  # serves the backfilled blocks
    run: SwarmRun
    summary: str
    start: float
    end: float


def _collector_address(output: str) -> str:
    m = re.search(r"pubsub trace collector: (\S+/p2p/\S+)", output)
    assert m, f"no collector address printed:\n{output}"
    return m[1]


def _trace_events(exporter_url: str) -> float:
    text = http_get(exporter_url + "/metrics")
    return sum(float(v) for v in re.findall(r"^libp2p_pubsub_trace_events_total\{[^}]*\} (\S+)$", text, re.M))


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incident]:
    work: Path = tmp_path_factory.mktemp("incident")
    server = IntrospectServer()
    # a synthetic node whose clock is the wall clock: it steps 1 s per State, pushed every --interval 1s
    server.add("", connections=8, peerstore=True, start_ms=int(time.time() * 1000))
    with ServerThread(server) as srv:
        exporter = start_exporter(
            [
                "--target",
                f"node-x={srv.url()}",
                "--interval",
                "1s",
                "--record",
                str(work / "rec"),
                "--pubsub.listen",
                "/ip4/127.0.0.1/tcp/0",
            ],
            work / "exporter",
        )
        live = start_prometheus(work / "live", [scrape_job(JOB, exporter.port)], scrape_interval="1s")
        try:
            wait_for(lambda: live.value(f'up{{job="{JOB}"}}') == 1, 30, "the live Prometheus' first scrape")
            started = time.time()
            (work / "traces").mkdir()
            collector = wait_for(lambda: _collector_address(exporter.output()), 20, "the collector's address")
            run = trio.run(
                functools.partial(run_traced_swarm, work / "traces", n=3, messages=12, spacing=0.4, collector=collector)
            )
            wait_for(
                lambda: _trace_events(exporter.url) >= len(run.emitted), 20, "the exporter to hold every trace event"
            )
            scraped = f'count_over_time(up{{job="{JOB}"}}[1h])'
            done = live.value(scraped) or 0
            # a few more scrapes after the gossip, so the end of the range has them too
            wait_for(lambda: (live.value(scraped) or 0) >= done + 3, 20, "three more scrapes")
            ended = time.time()
        finally:
            exporter.stop()
    blocks = work / "blocks"
    cmd = [sys.executable, "-m", "exporter", "backfill", str(work / "rec"), "-o", str(blocks), "--pubsub.step", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    history = start_prometheus(work / "history", [], storage=blocks, retention="1d")
    try:
        yield Incident(live, history, run, proc.stdout, started, ended)
    finally:
        history.stop()
        live.stop()


def test_the_recording_directory_holds_all_three(incident: Incident) -> None:
    s = incident.summary
    assert "backfilled 1 file(s) of 1 node(s)" in s, s
    assert f"{len(incident.run.emitted)} events of 3 traced node(s)" in s, s
    assert re.search(r"scrape journal: 1 file\(s\), \d+ scrapes written \(\d+ answered in time, 0 not\)", s), s


@pytest.mark.parametrize("path", dashboards(with_own_proof=True), ids=lambda p: p.stem)
def test_every_panel_of_every_board_has_data(incident: Incident, path: Path) -> None:
    dash = json.loads(path.read_text())
    window = {"start": f"{incident.start:.3f}", "end": f"{incident.end:.3f}"}
    variables = resolve_variables(incident.history, dash, **window)
    assert variables["instance"] == ["backfill"]
    checked, failures = panels_without_data(
        incident.history,
        path,
        variables,
        MACROS,
        start=incident.start,
        end=incident.end,
        step="1",
        allowed_empty=LIVE_ONLY,  # the overload panels: measured live only (docs/backfill.md)
    )
    assert checked >= 4
    assert not failures, "\n".join(failures)


def _samples(prom: Prometheus, series: str, selector: str, start: float, end: float) -> list[tuple[float, float]]:
    span = int(end - start) + 5
    result = prom.api("query", query=f"{series}{{{selector}}}[{span}s]", time=f"{end + 2:.3f}")["result"]
    assert len(result) == 1, result
    return [(float(t), float(v)) for t, v in result[0]["values"]]


@pytest.mark.parametrize("series", EXPORTER_SERIES)
def test_the_exporters_own_series_are_what_the_live_prometheus_stored(incident: Incident, series: str) -> None:
    live = _samples(incident.live, series, f'job="{JOB}"', incident.start, incident.end)
    history = _samples(incident.history, series, 'instance="backfill"', incident.start, incident.end)
    answered = {t for t, v in _samples(incident.live, "up", f'job="{JOB}"', incident.start, incident.end) if v == 1}
    assert len(answered) >= 8
    # Each scrape the live Prometheus got an answer to is in the history with its value exactly. The
    # journal stamps the request's arrival: after Prometheus' own stamp (its scrape's start) and
    # before its 1 s timeout ran out, which is also when its next scrape starts.
    # A scrape Prometheus gave up on may have reached the exporter late or never: not compared.
    for t, v in live:
        if t in answered:
            same = [hv for ht, hv in history if t - 0.002 <= ht < t + 1.0]
            assert same[:1] == [v], (series, t, v, same)


def test_every_alert_expression_evaluates_over_the_incident(incident: Incident) -> None:
    rules = [
        r
        for f in sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
    ]
    assert len(rules) >= 10
    with_data = set()
    for rule in rules:  # a parse or evaluation error fails in api()
        window = {"start": f"{incident.start:.3f}", "end": f"{incident.end:.3f}", "step": "1"}
        if incident.history.api("query_range", query=rule["expr"], **window)["result"]:
            with_data.add(rule["alert"])
    # the swarm's meshes (2 peers) sit under gossipsub's D_lo=5, the node has under 10 peers
    assert {"Libp2pPubsubMeshCollapse", "Libp2pPeerCountLow"} <= with_data
    # every journaled scrape was answered in time: the target-down alert has nothing to fire on
    assert "Libp2pExporterTargetDown" not in with_data
