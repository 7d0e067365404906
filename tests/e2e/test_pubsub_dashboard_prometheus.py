"""The demo's gossipsub traffic, traced over libp2p to the demo's exporter: on /metrics, in every panel
of the pubsub dashboard from a real Prometheus, through the pubsub alert rules, and as message traces
over OTLP.

``libp2p-exporter demo`` runs four py-libp2p gossipsub nodes whose tracers send go-libp2p-pubsub
trace batches to the exporter's collector (/libp2p/pubsub/tracer/1.0.0). Prometheus scrapes the
exporter every second with the pubsub rule group loaded; the OTLP receiver is in this process.
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("libp2p")

from dashboards.generate import JSON_DIR, REPO, RULES_DIR
from tests.support.otlp import HttpReceiver
from tests.support.panel_queries import graphs as panel_graphs
from tests.support.panel_queries import has_data, resolve_variables, substitute
from tests.support.procs import Proc, Prometheus, http_get, scrape_job, start_exporter, start_prometheus, wait_for

DASHBOARD = REPO / JSON_DIR / "libp2p-pubsub.json"
RULES = REPO / RULES_DIR / "libp2p-pubsub.yml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, HttpReceiver, Proc]]:
    work: Path = tmp_path_factory.mktemp("pubsub-dash")
    receiver = HttpReceiver().start()
    demo = start_exporter(
        [
            "demo",
            "--nodes",
            "4",
            "--churn",
            "",
            "--seed",
            "5",
            "--pubsub.window",
            "3",
            "--otlp.endpoint",
            receiver.endpoint,
        ],
        work / "demo",
    )
    prom = start_prometheus(work / "prom", [scrape_job("libp2p-exporter", demo.port)], rule_files=[RULES])
    try:
        wait_for(prom.targets_up, 30, "the demo target to be up")
        wait_for(
            lambda: (
                (prom.value("sum(rate(libp2p_pubsub_propagation_delay_seconds_count[10s]))") or 0) > 0
                and (prom.value("sum(rate(libp2p_pubsub_message_reach_ratio_count[10s]))") or 0) > 0
                and (prom.value("min(count_over_time(libp2p_pubsub_rejected_messages_total[20s]))") or 0) >= 3
                and (prom.value("count_over_time(libp2p_pubsub_traced_nodes[1m])") or 0) >= 15
            ),
            120,
            "15 s of scraped gossipsub traces, with propagation, reach and a rejection",
            interval=0.5,
        )
        yield prom, receiver, demo
    finally:
        prom.stop()
        demo.stop()
        receiver.stop()


def test_gossipsub_shows_on_metrics(stack: tuple[Prometheus, HttpReceiver, Proc]) -> None:
    _, _, demo = stack
    text = http_get(demo.url + "/metrics")
    for family in (
        "libp2p_pubsub_topic_msg_published_total",
        "libp2p_pubsub_mesh_peer_counts",
        "libp2p_pubsub_delivered_messages_total",
        "libp2p_pubsub_rpcs_total",
        "libp2p_pubsub_collector_streams",
    ):
        assert f"\n{family}{{" in text or f"\n{family} " in text, family
    nodes = {
        line.split('node="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("libp2p_pubsub_mesh_peer_counts{")
    }
    assert nodes == {"node-0", "node-1", "node-2", "node-3"}  # named like the introspected nodes
    assert "libp2p_pubsub_collector_streams 4.0" in text


MACROS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m"}


def test_every_pubsub_panel_returns_data(stack: tuple[Prometheus, HttpReceiver, Proc]) -> None:
    prom, _, _ = stack
    dash = json.loads(DASHBOARD.read_text())
    variables = resolve_variables(prom, dash)
    assert variables["topic"] == ["libp2p-exporter-demo"] and len(variables["node"]) == 4
    end = time.time()
    failures, checked = [], 0
    graphs = panel_graphs(dash)
    for panel in graphs:
        for target in panel["targets"]:
            expr = substitute(target["expr"], variables, MACROS)
            try:
                data = prom.api("query_range", query=expr, start=f"{end - 30:.3f}", end=f"{end:.3f}", step="2")
            except urllib.error.HTTPError as exc:
                failures.append(f"{panel['title']} [{target['refId']}]: {exc} {exc.read().decode()[:300]}")
                continue
            checked += 1
            if not has_data(data):
                failures.append(f"{panel['title']} [{target['refId']}]: no data for {expr}")
    assert checked >= len(graphs) >= 14
    assert not failures, "\n".join(failures)


def test_pubsub_rules_evaluate_on_real_data(stack: tuple[Prometheus, HttpReceiver, Proc]) -> None:
    prom, _, _ = stack

    def evaluated() -> list[dict[str, Any]] | None:
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups if g["name"] == "libp2p-pubsub" for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    rules = wait_for(evaluated, 30, "the pubsub rules to be evaluated")
    assert {r["name"] for r in rules} == {
        "Libp2pPubsubMeshCollapse",
        "Libp2pPubsubRejectionShare",
        "Libp2pPubsubPropagationSlow",
    }
    assert all(r["health"] == "ok" for r in rules), rules
    # the demo's meshes (D_lo 2 of 3 peers) sit under go's D_lo=5: the collapse rule sees them
    collapse = next(r for r in rules if r["name"] == "Libp2pPubsubMeshCollapse")
    assert {a["labels"]["node"] for a in collapse["alerts"]} <= {"node-0", "node-1", "node-2", "node-3"}
    assert collapse["alerts"] and all(a["state"] in ("pending", "firing") for a in collapse["alerts"])


def test_demo_messages_arrive_as_traces_over_otlp(stack: tuple[Prometheus, HttpReceiver, Proc]) -> None:
    _, receiver, _ = stack
    wait_for(lambda: any(s.span.name == "pubsub.deliver" for s in receiver.spans()), 30, "pubsub spans over OTLP")
    spans = [s for s in receiver.spans() if s.span.name.startswith("pubsub.")]
    roots = {s.span.trace_id: s for s in spans if s.span.name == "pubsub.publish"}
    children = [s for s in spans if s.span.name != "pubsub.publish"]
    assert roots and children
    joined = [c for c in children if c.span.trace_id in roots]
    assert joined and all(c.span.parent_span_id == roots[c.span.trace_id].span.span_id for c in joined)
    assert {s.resource["service.name"] for s in spans} == {"libp2p-pubsub"}
    assert {s.resource["service.instance.id"][:8] for s in spans} == {"12D3KooW"}  # each node its own instance
    assert {c.attrs["libp2p.exporter.node"] for c in children} <= {"node-0", "node-1", "node-2", "node-3"}
