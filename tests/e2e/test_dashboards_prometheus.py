"""Proof: every query of every dashboard panel returns data from a real Prometheus scraping the exporter.

The exporter is the churn feeder (tests/support/churn_feeder.py): the real HTTP app over a Hub fed by a
SyntheticNode with churn. Template variables are resolved the way Grafana would: ``$instance`` and
``$node`` from their own ``label_values`` queries (all values, multi-select), the interval macros by
fixed windows that suit a 1 s scrape (tests/support/panel_queries.py, shared with the backfill test).

Everything runs three times: with the default histogram profile, with ``--histograms.profile lean``
(fewer bounds and labels, docs/metrics.md), and with ``lean`` plus ``--histograms.native`` scraped by a
Prometheus with ``--enable-feature=native-histograms`` (it negotiates protobuf and stores only native
histograms for the six families: no ``_bucket``/``_count``/``_sum`` series), under which the panels and
the shipped rules must work too.
"""

from __future__ import annotations

import json
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from dashboards.generate import JSON_DIR, REPO
from dashboards.promql import short_lived_share
from exporter.model.histogram_profiles import FAMILIES
from tests.support.panel_queries import (
    dashboards,
    graphs,
    has_data,
    panels_without_data,
    resolve_variables,
    substitute,
)
from tests.support.procs import Proc, Prometheus, scrape_job, start_exporter, start_prometheus, wait_for

MACROS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m"}
# Panels that cannot show data in this setup, with the reason. Keep it short.
ALLOWED_EMPTY: dict[tuple[str, str], str] = {}


RULES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))


def closed_rate(prom: Prometheus, family: str) -> float:
    """Observations per second of a histogram family over 10 s, from classic or native series."""
    expr = f"sum(rate({family}_count[10s])) or histogram_count(sum(rate({family}[10s])))"
    return prom.value(expr) or 0.0


@pytest.fixture(scope="module", params=["default", "lean", "lean+native"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    work: Path = tmp_path_factory.mktemp(f"dash-prom-{request.param}")
    profile, _, native = request.param.partition("+")
    feeder: Proc = start_exporter(
        ["--churn", "0.3", "--interval", "0.5", "--histograms.profile", profile]
        + (["--histograms.native"] if native else []),
        work / "feeder",
        module="tests.support.churn_feeder",
    )
    prom = start_prometheus(
        work / "prom",
        [scrape_job("libp2p-exporter", feeder.port)],
        rule_files=RULES,
        features=["native-histograms"] if native else [],
    )
    prom.histograms = profile  # type: ignore[attr-defined]
    prom.native = bool(native)  # type: ignore[attr-defined]
    try:
        wait_for(prom.targets_up, 30, "the feeder target to be up")
        # Enough history for rate() windows and for closed connections and streams to show up.
        wait_for(
            lambda: (
                (prom.value("count_over_time(libp2p_peers[1m])") or 0) >= 15
                and closed_rate(prom, "libp2p_stream_duration_seconds") > 0
                and closed_rate(prom, "libp2p_swarm_connection_duration_seconds") > 0
            ),
            60,
            "15 s of scraped churn",
            interval=0.5,
        )
        yield prom
    finally:
        prom.stop()
        feeder.stop()


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.stem)
def test_every_panel_query_returns_data(stack: Prometheus, path: Path) -> None:
    prom = stack
    dash = json.loads(path.read_text())
    variables = resolve_variables(prom, dash)
    assert variables["node"] == ["churny"]
    end = time.time()
    _, failures = panels_without_data(
        prom, path, variables, MACROS, start=end - 30, end=end, step="2", allowed_empty=ALLOWED_EMPTY
    )
    assert not failures, "\n".join(failures)
    # The annotation queries are valid PromQL here too (whether alerts fire is test_alerting_e2e's job).
    for annotation in dash["annotations"]["list"]:
        assert prom.api("query", query=substitute(annotation["expr"], variables, MACROS))["resultType"] == "vector"


def test_nodes_table_names_every_label_the_exporter_sends(stack: Prometheus) -> None:
    """The Overview table hides the query's own columns and orders the labels libp2p_node_info really has."""
    dash = json.loads((REPO / JSON_DIR / "libp2p-overview.json").read_text())
    (table,) = [p for p in graphs(dash) if p["title"] == "Nodes"]
    expr = substitute(table["targets"][0]["expr"], resolve_variables(stack, dash), MACROS)
    (series,) = stack.api("query", query=expr)["result"]
    organize = table["transformations"][0]["options"]
    hidden = {name for name, hide in organize["excludeByName"].items() if hide}
    labels = set(series["metric"])
    assert labels - {"__name__"} == set(organize["indexByName"]), (
        "a label the table does not place, or a column with no label"
    )
    assert {"Time", "Value", "__name__"} <= hidden and not hidden & (labels - {"__name__"})
    assert series["metric"]["peer_id"] and series["metric"]["implementation"]


def test_the_profile_is_the_one_asked_for_and_the_rules_evaluate(stack: Prometheus) -> None:
    """The run is not vacuous (lean really drops bounds and labels; native really stores native
    histograms and no classic series), every shipped rule evaluates without error, and the
    short-lived share the rule compares (le=8, or histogram_fraction up to 8 s) has data under each."""
    lean = stack.histograms == "lean"  # type: ignore[attr-defined]
    native = stack.native  # type: ignore[attr-defined]
    h = "libp2p_swarm_connection_duration_seconds"
    if native:
        six = "|".join(FAMILIES)
        classic = stack.query(f'count({{__name__=~"({six})_(bucket|count|sum)"}})')
        assert not classic, f"classic series stored by a native-histogram Prometheus: {classic}"
        stored = stack.query(h)
        assert stored and all("histogram" in s for s in stored), stored[:1]
        assert {s["metric"].get("security") for s in stored} == {None}  # lean's labels on native series
    else:
        assert bool(stack.api("query", query=f'{h}_bucket{{le="0.125"}}')["result"]) is not lean
        assert bool(stack.api("query", query=f"{h}_bucket{{security!=''}}")["result"]) is not lean
        assert not stack.query(h)  # no native series from a text scrape
    share = stack.api("query", query=short_lived_share('job="libp2p-exporter"', 8, "30s"))["result"]
    assert share and 0 <= float(share[0]["value"][1]) <= 1

    def evaluated() -> list[dict[str, Any]]:
        rules = [r for g in stack.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else []

    wait_for(lambda: bool(evaluated()), 20, "every rule to be evaluated once")
    bad = [f"{r['name']}: {r.get('lastError')}" for r in evaluated() if r["health"] != "ok"]
    assert not bad, "\n".join(bad)


def test_allow_list_names_real_panels() -> None:
    titles = {(p.stem, panel["title"]) for p in dashboards() for panel in graphs(json.loads(p.read_text()))}
    assert set(ALLOWED_EMPTY) <= titles


def test_the_check_catches_missing_series_and_parse_errors(stack: Prometheus) -> None:
    """The proof above could not pass vacuously: no data and bad PromQL are both detected."""
    end = time.time()
    data = stack.api("query_range", query="libp2p_no_such_series", start=f"{end - 30:.3f}", end=f"{end:.3f}", step="2")
    assert not has_data(data)
    assert not has_data(stack.api("query", query="histogram_quantile(0.5, libp2p_peers)"))
    with pytest.raises(urllib.error.HTTPError):
        stack.api("query", query="sum(rate(libp2p_peers[$__rate_interval]))")
