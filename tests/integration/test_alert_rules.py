"""The alert rules: promtool-clean, unit-tested (firing, not firing, recovery), documented, overridable."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import alerts
from dashboards.__main__ import main as generate_main
from dashboards.generate import RULES_DIR
from dashboards.params import resolve
from tests.support.procs import REPO, promtool

RULES = REPO / RULES_DIR
TESTS = REPO / "deploy" / "prometheus" / "tests"
README = REPO / "deploy" / "README.md"


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def all_rules() -> list[dict[str, Any]]:
    return [r for f in rule_files() for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules_is_clean() -> None:
    res = promtool("check", "rules", *map(str, rule_files()))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "WARNING" not in (res.stdout + res.stderr).upper()
    assert res.stdout.count("SUCCESS") == len(rule_files())


def test_promtool_unit_tests_pass() -> None:
    res = promtool("test", "rules", *map(str, sorted(TESTS.glob("*.test.yml"))))
    assert res.returncode == 0, res.stdout + res.stderr


def test_one_group_per_concern_per_file() -> None:
    names = []
    for f in rule_files():
        groups = yaml.safe_load(f.read_text())["groups"]
        assert len(groups) == 1, f
        assert groups[0]["name"] == f.stem
        names.append(f.stem)
    assert set(names) == {
        "libp2p-peers",
        "libp2p-churn",
        "libp2p-dht",
        "libp2p-peerstore",
        "libp2p-exporter",
        "libp2p-pubsub",
    }


def test_required_alerts_exist_with_metadata_and_runbooks() -> None:
    rules = {r["alert"]: r for r in all_rules()}
    for name in (
        "Libp2pPeerCountLow",
        "Libp2pPeerCountCritical",
        "Libp2pPeerCountDrop",
        "Libp2pHighPeerChurn",
        "Libp2pShortLivedConnections",
        "Libp2pNoInboundConnections",
        "Libp2pDhtRoutingTableShrinking",
        "Libp2pExporterTargetDown",
        "Libp2pExporterSnapshotsStale",
        "Libp2pExporterDecodeErrors",
        "Libp2pPubsubMeshCollapse",
        "Libp2pPubsubRejectionShare",
        "Libp2pPubsubPropagationSlow",
    ):
        assert name in rules, name
    assert rules["Libp2pPeerCountLow"]["labels"]["severity"] == "warning"
    assert rules["Libp2pPeerCountCritical"]["labels"]["severity"] == "critical"
    anchors = {_slug(h) for h in re.findall(r"^#+\s+(.+)$", README.read_text(), re.M)}
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert anchor in anchors, f"{name}: no runbook section `{anchor}` in deploy/README.md"


def _slug(heading: str) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_is_unit_tested_firing_not_firing_and_recovering() -> None:
    cases: dict[str, list[tuple[int, bool]]] = {}
    for f in TESTS.glob("*.test.yml"):
        for test in yaml.safe_load(f.read_text())["tests"]:
            for case in test["alert_rule_test"]:
                minutes = int(str(case["eval_time"]).rstrip("m"))
                cases.setdefault(case["alertname"], []).append((minutes, bool(case.get("exp_alerts"))))
    for name in (r["alert"] for r in all_rules()):
        seen = sorted(cases.get(name, []))
        firing = [t for t, f in seen if f]
        assert firing, f"{name}: no test where it fires"
        assert any(not f and t < min(firing) for t, f in seen), f"{name}: no test before it fires"
        assert any(not f and t > max(firing) for t, f in seen), f"{name}: no recovery test"


def test_unit_tests_notice_a_changed_threshold(tmp_path: Path) -> None:
    """Non-vacuous: the same promtool tests fail against rules generated with other thresholds."""
    rules, tests = tmp_path / "rules", tmp_path / "tests"
    assert (
        generate_main(
            ["--rules-out", str(rules), "--set", "churn_per_peer_per_minute=5", "--set", "peer_floor_warning=4"]
        )
        == 0
    )
    shutil.copytree(TESTS, tests)
    res = promtool("test", "rules", str(tests / "libp2p-churn.test.yml"), str(tests / "libp2p-peers.test.yml"))
    assert res.returncode != 0
    assert "Libp2pHighPeerChurn" in res.stdout + res.stderr
    assert "Libp2pPeerCountLow" in res.stdout + res.stderr


def test_thresholds_and_windows_are_overridable(tmp_path: Path) -> None:
    overrides = tmp_path / "mine.yaml"
    overrides.write_text("job: my-exporter\nchurn_window: 30s\nchurn_for: 15s\nshort_lived_seconds: 2\n")
    assert generate_main(["--rules-out", str(tmp_path), "--params", str(overrides)]) == 0
    churn = (tmp_path / "libp2p-churn.yml").read_text()
    assert 'job=~"my-exporter"' in churn and "[30s]" in churn and "for: 15s" in churn
    assert 'le=~"2(\\\\.0)?"' in churn
    res = promtool("check", "rules", *map(str, sorted(tmp_path.glob("*.yml"))))
    assert res.returncode == 0, res.stdout + res.stderr
    assert generate_main(["--rules-out", str(tmp_path), "--set", "nonsense=1"]) == 2


def test_le_matcher_handles_both_spellings() -> None:
    assert alerts.le_matcher(8) == 'le=~"8(\\\\.0)?"'
    assert alerts.le_matcher(0.5) == 'le="0.5"'
    assert sorted(alerts.alert_names(resolve())) == sorted(r["alert"] for r in all_rules())


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.test.yml")), ids=lambda p: p.stem)
def test_each_test_file_targets_the_committed_rules(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    for rel in data["rule_files"]:
        assert (path.parent / rel).resolve().parent == RULES.resolve()


def test_runbook_url_is_absolute_from_a_configurable_base() -> None:
    """Issue 13: runbook_url, absolute, from the runbook_base parameter; a relative base is refused."""
    import pytest

    from dashboards.alerts import groups
    from dashboards.params import resolve

    base = "https://runbooks.test/deploy/README.md"
    rules = [r for g in groups(resolve({"runbook_base": base})).values() for r in g["rules"]]
    assert rules and all(r["annotations"]["runbook_url"] == f"{base}#{r['alert'].lower()}" for r in rules)
    assert not any("runbook_url" in r["annotations"] for g in groups(resolve()).values() for r in g["rules"])
    with pytest.raises(ValueError):
        resolve({"runbook_base": "deploy/README.md"})
