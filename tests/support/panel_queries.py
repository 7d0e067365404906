"""Dashboard panel queries the way Grafana runs them, for tests that check every panel has data.

Template variables are resolved like Grafana does: each query variable's ``label_values()`` through
Prometheus' label API (all values, multi-select), the interval macros by fixed windows the caller
picks to suit its data's interval.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dashboards.generate import JSON_DIR, REPO
from tests.support.procs import Prometheus

LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


# Pubsub panels need gossipsub traces, which introspection States (the churn feeder, captures) never
# carry: that dashboard is proven against the demo's real gossipsub swarm instead
# (tests/e2e/test_pubsub_dashboard_prometheus.py).
OWN_PROOF = {"libp2p-pubsub"}

# The overload panels show what a running exporter measured of its own ingest (the governor's budget
# and factor, the interval asked and agreed, what it shed before parsing): a capture does not carry
# them, and backfill writes none of them (docs/backfill.md), so over backfilled history they are empty.
_LIVE_ONLY = "the exporter's own ingest (governor, interval asked, shedding): measured live only, not backfilled"
LIVE_ONLY: dict[tuple[str, str], str] = {
    ("libp2p-exporter-health", "Exporter capacity"): _LIVE_ONLY,
    ("libp2p-exporter-health", "Interval asked and agreed"): _LIVE_ONLY,
    ("libp2p-exporter-health", "Shed before parsing"): _LIVE_ONLY,
}


def dashboards(*, with_own_proof: bool = False) -> list[Path]:
    """The shipped dashboards that introspection data alone can fill (all of them: ``with_own_proof``)."""
    return sorted(p for p in (REPO / JSON_DIR).glob("*.json") if with_own_proof or p.stem not in OWN_PROOF)


def graphs(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels with queries: rows left out, panels inside a collapsed row included."""
    found = []
    for panel in dash["panels"]:
        found += [panel] if panel["type"] != "row" else panel.get("panels", [])
    return found


def escape(value: str) -> str:
    """Regex-escape a value inside a PromQL string literal, as Grafana's Prometheus data source does."""
    return re.sub(r"([\\.^$*+?()\[\]{}|])", r"\\\\\1", value)


def substitute(expr: str, variables: Mapping[str, list[str]], macros: Mapping[str, str]) -> str:
    for macro, value in macros.items():
        expr = expr.replace(macro, value)
    for name in sorted(variables, key=len, reverse=True):
        values = variables[name]
        regex = values[0] if len(values) == 1 else "(" + "|".join(values) + ")"
        expr = expr.replace("${" + name + "}", regex).replace("$" + name, regex)
    assert "$" not in expr, f"unresolved variable in {expr}"
    return expr


def resolve_variables(prom: Prometheus, dash: dict[str, Any], **window: str) -> dict[str, list[str]]:
    """Run each query variable's label_values() through Prometheus' label API, in order.

    ``window`` (start=, end=) limits the lookup to a time range, as Grafana does for the dashboard's range.
    """
    resolved: dict[str, list[str]] = {}
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = LABEL_VALUES.match(var["query"])
        assert m, f"variable {var['name']}: unsupported query {var['query']}"
        selector = substitute(m.group("selector") or "", resolved, {})
        params = {"match[]": selector} if selector else {}
        values = prom.api(f"label/{m.group('label')}/values", **params, **window)
        assert values, f"variable {var['name']} ({var['query']}) has no values"
        resolved[var["name"]] = [escape(v) for v in values]
    return resolved


def has_data(result: dict[str, Any]) -> bool:
    if result["resultType"] == "matrix":
        return any(math.isfinite(float(v)) for series in result["result"] for _, v in series["values"])
    if result["resultType"] == "vector":
        return any(math.isfinite(float(s["value"][1])) for s in result["result"])
    return math.isfinite(float(result["result"][1]))


def panels_without_data(
    prom: Prometheus,
    path: Path,
    variables: Mapping[str, list[str]],
    macros: Mapping[str, str],
    *,
    start: float,
    end: float,
    step: str,
    allowed_empty: Mapping[tuple[str, str], str],
) -> tuple[int, list[str]]:
    """Every target of every panel over [start, end] (instant ones at ``end``): (checked, failures)."""
    dash = json.loads(path.read_text())
    failures = []
    checked = 0
    for panel in graphs(dash):
        for target in panel["targets"]:
            expr = substitute(target["expr"], variables, macros)
            try:
                if target.get("instant"):
                    data = prom.api("query", query=expr, time=f"{end:.3f}")
                else:
                    data = prom.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step)
            except urllib.error.HTTPError as exc:  # a parse error is a failure like any other
                failures.append(f"{panel['title']} [{target['refId']}]: {exc} {exc.read().decode()[:300]}")
                continue
            checked += 1
            if not has_data(data) and (path.stem, panel["title"]) not in allowed_empty:
                failures.append(f"{panel['title']} [{target['refId']}]: no data for {expr}")
    assert checked >= len(graphs(dash))
    return checked, failures
