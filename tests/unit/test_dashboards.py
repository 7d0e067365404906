"""Dashboards as code: committed JSON is fresh, round-trips through the SDK models, and is well formed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.__main__ import main as generate_main
from dashboards.boards import DASHBOARDS
from dashboards.generate import JSON_DIR, REPO, render_all
from dashboards.panels import FIRING_ALERTS, PER_MINUTE_PER_PEER, PROMETHEUS_ANNOTATION_KEYS, QUERY_COLUMNS
from dashboards.params import PARAMS, resolve
from tests.support.procs import FIXTURES

SCHEMA = FIXTURES / "grafana" / "dashboard-v11.6.schema.json"  # in the repository: this check never skips
EXPECTED = {"overview", "connections", "streams", "traffic", "dht", "peerstore", "churn", "exporter-health", "pubsub"}


def committed() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((REPO / JSON_DIR).glob("*.json"))}


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def graphs(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels that draw something: all but the rows."""
    return (p for p in panels(dash) if p["type"] != "row")


def test_one_dashboard_per_subsystem() -> None:
    assert set(DASHBOARDS) == EXPECTED
    assert set(committed()) == {f"libp2p-{name}" for name in EXPECTED}


def test_committed_files_match_the_generator() -> None:
    """Dashboards, rule files and Kubernetes objects: what is committed is what the code generates."""
    files = render_all(resolve())
    stale = [rel for rel, text in files.items() if (REPO / rel).read_text() != text]
    assert not stale, f"stale generated files (run `python -m dashboards`): {stale}"
    assert generate_main(["--check"]) == 0


def test_check_mode_notices_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboards.__main__ as entry

    for rel, text in render_all(resolve()).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(entry, "REPO", tmp_path)
    assert entry.main(["--check"]) == 0
    victim = tmp_path / JSON_DIR / "libp2p-churn.json"
    victim.write_text(victim.read_text().replace("Peer churn per peer", "Peer churn"))
    assert entry.main(["--check"]) == 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trips_through_the_sdk_models(name: str) -> None:
    register_default_plugins()
    data = committed()[f"libp2p-{name}"]
    again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    # The SDK's annotation model has no place for the Prometheus annotation's formats: all else survives.
    for annotation in data["annotations"]["list"]:
        for key in PROMETHEUS_ANNOTATION_KEYS:
            annotation.pop(key)
    assert again == data


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_panels_are_well_formed(name: str) -> None:
    dash = committed()[f"libp2p-{name}"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}: {ids}"
    assert len(ids) >= 5
    occupied: set[tuple[int, int]] = set()
    for p in panels(dash):
        pos = p["gridPos"]
        assert pos["w"] > 0 and pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{p['title']} is off the grid: {pos}"
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & occupied, f"{p['title']} overlaps another panel"
        occupied |= cells
        if p["type"] == "row":
            assert p["title"] and pos["w"] == 24 and pos["h"] == 1, f"row {p['title']!r}: {pos}"
            continue
        assert p.get("description", "").strip(), f"{p['title']} has no description"
        assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']} has no unit"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], f"{p['title']} has no query"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            assert "$node" in t["expr"] or "$instance" in t["expr"], f"{p['title']}: query ignores the variables"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_variables_and_no_fixed_datasource(name: str) -> None:
    dash = committed()[f"libp2p-{name}"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("instance", "node"):
        assert variables[var]["type"] == "query" and variables[var]["multi"] is True
        assert variables[var]["datasource"]["uid"] == "${datasource}"

    def uids(obj: Any) -> Iterator[str]:
        if isinstance(obj, dict):
            if isinstance(obj.get("datasource"), dict):
                yield obj["datasource"].get("uid", "")
            for v in obj.values():
                yield from uids(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from uids(v)

    found = set(uids(dash))
    assert found == {"${datasource}"}, found


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_matches_grafana_11_6_schema(name: str) -> None:
    schema = json.loads(SCHEMA.read_text())
    # Grafana writes the base threshold step as {"value": null} (it stands for -Infinity); the published
    # schema says so in the field's description but types it as a plain number. Accept null there only.
    step = schema["definitions"]["Threshold"]["properties"]["value"]
    step["type"] = ["number", "null"]
    # A Prometheus annotation keeps its title, text and tag formats beside `expr`, as Grafana saves them;
    # the published schema lists `expr` only. Accept those three there, as strings, and nothing else.
    annotation = schema["definitions"]["AnnotationQuery"]["properties"]
    annotation.update({key: {"type": "string"} for key in PROMETHEUS_ANNOTATION_KEYS})
    jsonschema.validate(committed()[f"libp2p-{name}"], schema)


def test_churn_dashboard_draws_the_alert_thresholds() -> None:
    dash = committed()["libp2p-churn"]
    by_title = {p["title"]: p for p in panels(dash)}
    for title, param in (
        ("Peer churn per peer", "churn_per_peer_per_minute"),
        ("Connection churn per peer", "conn_churn_per_peer_per_minute"),
        ("Short-lived connections", "short_lived_share"),
        ("Peer count and floors", "peer_floor_warning"),
        ("Peer count and floors", "peer_floor_critical"),
    ):
        p = by_title[title]
        steps = [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        assert float(PARAMS[param].default) in steps, (title, steps)
        assert p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    churn_exprs = " ".join(t["expr"] for p in graphs(dash) for t in p["targets"])
    for metric in (
        "libp2p_peers_connected_total",
        "libp2p_peers_disconnected_total",
        "libp2p_swarm_connections_opened_total",
        "libp2p_swarm_connections_closed_total",
        "libp2p_swarm_connection_duration_seconds_bucket",
        "delta(libp2p_peers",
    ):
        assert metric in churn_exprs


def test_overrides_reach_dashboards_and_rules() -> None:
    params = resolve({"churn_per_peer_per_minute": "2.5", "churn_window": "1m"})
    files = render_all(params)
    assert "> 2.5" in files["deploy/prometheus/rules/libp2p-churn.yml"]
    churn = json.loads(files[f"{JSON_DIR}/libp2p-churn.json"])
    steps = [
        s["value"]
        for p in panels(churn)
        if p["title"] == "Peer churn per peer"
        for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]
    ]
    assert 2.5 in steps
    with pytest.raises(KeyError):
        resolve({"no_such_param": 1})


def test_sdk_is_the_grafana_11_6_build() -> None:
    """A plain install resolves to the 10.1 types; the pin in pyproject must hold the 11.6 build."""
    from importlib.metadata import version

    assert version("grafana-foundation-sdk").endswith("!11.6.0")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert pyproject.count('"grafana-foundation-sdk==1769699379!11.6.0"') == 2  # the dashboards and dev extras
    assert all(d["schemaVersion"] == 41 for d in committed().values())


def test_panels_draw_the_rules_own_expressions() -> None:
    """One definition (dashboards/promql.py): the line a panel draws is its alert's expression, selector apart."""
    from dashboards import alerts

    params = resolve()
    rules = {r["alert"]: r["expr"] for g in alerts.groups(params).values() for r in g["rules"]}
    drawn = {t["expr"] for dash in committed().values() for p in panels(dash) for t in p.get("targets", [])}

    def as_panel(expr: str) -> str:
        return expr.replace(f'job=~"{params["job"]}"', 'instance=~"$instance", node=~"$node"')

    for alert, part in (
        ("Libp2pHighPeerChurn", lambda e: e.rpartition("\n>")[0]),
        ("Libp2pHighConnectionChurn", lambda e: e.rpartition("\n>")[0]),
        ("Libp2pShortLivedConnections", lambda e: e.partition(" > ")[0]),
        ("Libp2pPeerCountDrop", lambda e: e.partition("\n< ")[2]),
        ("Libp2pDhtRoutingTableShrinking", lambda e: e.partition("\n< ")[2]),
        ("Libp2pPeerstoreGrowing", lambda e: e.partition("\nand on")[0].rpartition(" > ")[0]),
    ):
        expr = as_panel(part(rules[alert]))
        assert expr and expr != as_panel(rules[alert]), alert
        assert expr in drawn, f"no panel draws {alert}'s expression {expr!r}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sections_and_the_firing_alerts_annotation(name: str) -> None:
    """Every dashboard is cut into titled rows, and marks the alerts firing on the selected nodes."""
    dash = committed()[f"libp2p-{name}"]
    top = dash["panels"]
    assert top[0]["type"] == "row", "panels above the first row cannot be collapsed away"
    rows = [p for p in top if p["type"] == "row"]
    assert len(rows) >= 2 and len({r["title"] for r in rows}) == len(rows)
    assert all(not r["collapsed"] and r["panels"] == [] for r in rows)  # open rows hold no panels of their own
    ys = [p["gridPos"]["y"] for p in top]
    assert ys == sorted(ys), "panels are listed top to bottom, each under its row"
    (annotation,) = dash["annotations"]["list"]
    assert annotation["expr"] == FIRING_ALERTS and annotation["enable"] is True
    assert annotation["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert "{{alertname}}" in annotation["titleFormat"]
    assert 'alertstate="firing"' in FIRING_ALERTS and "$node" in FIRING_ALERTS and "$instance" in FIRING_ALERTS


def test_nodes_table_shows_labels_not_query_columns() -> None:
    (nodes,) = [p for p in graphs(committed()["libp2p-overview"]) if p["title"] == "Nodes"]
    assert nodes["type"] == "table" and nodes["targets"][0]["instant"] is True
    (organize,) = nodes["transformations"]
    assert organize["id"] == "organize"
    opts = organize["options"]
    assert {c for c, hidden in opts["excludeByName"].items() if hidden} == set(QUERY_COLUMNS)
    order = sorted(opts["indexByName"], key=opts["indexByName"].get)
    assert order[:5] == ["node", "implementation", "version", "platform", "peer_id"]
    assert set(opts["renameByName"]) == set(order)


# Counter rates drawn on more than one dashboard: each must read in one unit everywhere.
SHARED_RATES = (
    "libp2p_swarm_connections_opened_total",
    "libp2p_swarm_connections_closed_total",
    "libp2p_peers_connected_total",
    "libp2p_peers_disconnected_total",
)


def test_the_same_rate_has_the_same_unit_everywhere() -> None:
    plain_rate = re.compile(r"sum by \([^)]*\) \(rate\((\w+)\{[^}]*\}\[\$__rate_interval\]\)\)(?P<per_minute> \* 60)?")
    units: dict[str, set[tuple[str, bool]]] = {}
    for dash in committed().values():
        for p in graphs(dash):
            for t in p["targets"]:
                m = plain_rate.fullmatch(t["expr"])
                if m and m.group(1) in SHARED_RATES:
                    units.setdefault(m.group(1), set()).add(
                        (p["fieldConfig"]["defaults"]["unit"], bool(m["per_minute"]))
                    )
    assert set(units) == set(SHARED_RATES)
    assert all(found == {("cpm", True)} for found in units.values()), units


def test_churn_ratios_have_a_unit_and_range_totals_are_not_time_series() -> None:
    ratios = ranges = 0
    for dash in committed().values():
        for p in graphs(dash):
            for t in p["targets"]:
                # (events per minute) / current peers; pubsub shares divide rates by rates, unitless
                if "clamp_min(" in t["expr"] and "libp2p_pubsub_" not in t["expr"]:
                    ratios += 1
                    assert p["fieldConfig"]["defaults"]["unit"] == PER_MINUTE_PER_PEER, p["title"]
                if "[$__range]" in t["expr"]:  # a total over the whole time range: one number, not a line
                    ranges += 1
                    assert p["type"] != "timeseries" and t["instant"] is True, p["title"]
    assert ratios >= 3 and ranges >= 3


def test_scrape_target_up_follows_the_job_variable() -> None:
    """A Prometheus whose job is named anything (tried: ``libp2p``) sees "Scrape target up": the board
    selects the job variable, never the rules' job regex."""
    (up,) = [p for p in graphs(committed()["libp2p-exporter-health"]) if p["title"] == "Scrape target up"]
    assert up["targets"][0]["expr"] == 'up{job=~"$job", instance=~"$instance"}'
    assert PARAMS["job"].default not in json.dumps(committed()["libp2p-exporter-health"])


def test_every_board_has_a_job_variable_that_picks_its_instances() -> None:
    for name, board in committed().items():
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:4] == ["datasource", "job", "instance", "node"], (name, names)
        job, instance = board["templating"]["list"][1:3]
        metric = "libp2p_pubsub_traced_nodes" if name == "libp2p-pubsub" else "libp2p_exporter_up"
        assert job["query"] == f"label_values({metric}, job)" and job["includeAll"], name
        assert not job.get("allValue"), name  # All = the jobs found, not every job in Prometheus
        assert instance["query"] == f'label_values({metric}{{job=~"$job"}}, instance)', name


def test_pubsub_panels_draw_the_pubsub_rules_own_expressions() -> None:
    """The pubsub board and alert group share dashboards/pubsub.py: selector and window apart, the same PromQL."""
    from dashboards import alerts

    params = resolve()
    rules = {r["alert"]: r["expr"] for r in alerts.groups(params)["libp2p-pubsub"]["rules"]}
    drawn = {t["expr"] for p in panels(committed()["libp2p-pubsub"]) for t in p.get("targets", [])}

    def as_panel(expr: str, *, fleet: bool = False) -> str:
        sel = (
            'instance=~"$instance", topic=~"$topic"'
            if fleet
            else 'instance=~"$instance", node=~"$node", topic=~"$topic"'
        )
        expr = expr.replace(f'job=~"{params["job"]}"', sel)
        for window in (params["pubsub_reject_window"], params["pubsub_propagation_window"]):
            expr = expr.replace(f"[{window}]", "[$__rate_interval]")
        return expr.replace("job, instance, topic", "topic").replace(
            "job, instance, node, topic", "job, instance, node, topic"
        )

    mesh = as_panel(rules["Libp2pPubsubMeshCollapse"].partition(" < ")[0])
    share = as_panel(rules["Libp2pPubsubRejectionShare"].rpartition("\n>")[0])
    p99 = as_panel(rules["Libp2pPubsubPropagationSlow"].rpartition("\n>")[0], fleet=True)
    assert {mesh, share, p99} <= drawn, {mesh, share, p99} - drawn
