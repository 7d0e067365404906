"""Dashboards as code: committed JSON is fresh, round-trips through the SDK models, and is well formed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.__main__ import main as generate_main
from dashboards.build import DASHBOARDS
from dashboards.generate import JSON_DIR, REPO, render_all
from dashboards.params import PARAMS, resolve
from tests.support.procs import SHARED

SCHEMA = SHARED / "reference" / "grafana" / "dashboard-v11.6.schema.json"
EXPECTED = {"overview", "connections", "streams", "traffic", "dht", "churn", "exporter-health", "pubsub"}


def committed() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((REPO / JSON_DIR).glob("*.json"))}


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


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
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.exists():
        pytest.skip(f"{SCHEMA} not present")
    schema = json.loads(SCHEMA.read_text())
    # Grafana writes the base threshold step as {"value": null} (it stands for -Infinity); the published
    # schema says so in the field's description but types it as a plain number. Accept null there only.
    step = schema["definitions"]["Threshold"]["properties"]["value"]
    step["type"] = ["number", "null"]
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
    churn_exprs = " ".join(t["expr"] for p in panels(dash) for t in p["targets"])
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
