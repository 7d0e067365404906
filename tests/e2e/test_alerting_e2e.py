"""Alerting end to end: exporter -> Prometheus (our rules) -> Alertmanager -> a webhook on 127.0.0.1.

The churn feeder starts calm; the test switches churn on (the alert must arrive as firing) and off
again (it must arrive as resolved). The rules are the project's own, generated with short windows
through the documented overrides so that the test takes well under a minute or two.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from dashboards.__main__ import main as generate_main
from dashboards.generate import JSON_DIR, REPO
from tests.support.procs import (
    Proc,
    WebhookReceiver,
    scrape_job,
    start_alertmanager,
    start_exporter,
    start_prometheus,
    wait_for,
)

ALERT = "Libp2pHighPeerChurn"
OVERRIDES = ["churn_window=10s", "churn_for=5s", "churn_per_peer_per_minute=10"]


def _set_churn(feeder: Proc, value: float) -> None:
    req = urllib.request.Request(f"{feeder.url}/churn?value={value}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _notified(hook: WebhookReceiver, status: str) -> dict[str, Any] | None:
    for payload in hook.received():
        for alert in payload.get("alerts", []):
            if alert["labels"].get("alertname") == ALERT and alert["status"] == status:
                return alert
    return None


def test_churn_alert_fires_and_resolves_through_alertmanager(tmp_path: Path, procs: list[Proc]) -> None:
    rules = tmp_path / "rules"
    assert generate_main(["--rules-out", str(rules), *(f"--set={o}" for o in OVERRIDES)]) == 0
    hook = WebhookReceiver()
    try:
        am = start_alertmanager(tmp_path / "am", hook.url)
        procs.append(am)
        feeder = start_exporter(
            ["--churn", "0", "--interval", "0.5"], tmp_path / "feeder", module="tests.support.churn_feeder"
        )
        procs.append(feeder)
        prom = start_prometheus(
            tmp_path / "prom",
            [scrape_job("libp2p-exporter", feeder.port)],
            rule_files=sorted(rules.glob("*.yml")),
            alertmanager_url=am.url,
        )
        procs.append(prom)
        wait_for(prom.targets_up, 30, "the feeder target to be up")
        assert {g["name"] for g in prom.api("rules")["groups"]} == {
            "libp2p-peers",
            "libp2p-churn",
            "libp2p-dht",
            "libp2p-peerstore",
            "libp2p-exporter",
            "libp2p-pubsub",
        }

        # Calm: a full churn window of data, and the alert is not active.
        wait_for(lambda: (prom.value("count_over_time(libp2p_peers[10s])") or 0) >= 8, 30, "10 s of calm samples")
        assert not prom.query(f'ALERTS{{alertname="{ALERT}"}}')
        assert _notified(hook, "firing") is None

        _set_churn(feeder, 0.3)
        firing = wait_for(
            lambda: _notified(hook, "firing"), 60, f"{ALERT} to reach the webhook as firing", interval=0.25
        )
        assert firing["labels"]["node"] == "churny"
        assert firing["labels"]["severity"] == "warning"
        assert "high peer churn" in firing["annotations"]["summary"]
        assert "threshold 10" in firing["annotations"]["description"]
        assert firing["annotations"]["runbook"].endswith("#libp2phighpeerchurn")
        assert prom.query(f'ALERTS{{alertname="{ALERT}", alertstate="firing", node="churny"}}')
        # Every dashboard's annotation marks it while the node is selected, and not for another node.
        for path in sorted((REPO / JSON_DIR).glob("*.json")):
            (annotation,) = json.loads(path.read_text())["annotations"]["list"]
            for node, marked in (("churny", True), ("other", False)):
                expr = annotation["expr"].replace("$instance", ".*").replace("$node", node)
                names = {s["metric"]["alertname"] for s in prom.query(expr)}
                assert (ALERT in names) is marked, (path.stem, node, names)

        _set_churn(feeder, 0)
        resolved = wait_for(
            lambda: _notified(hook, "resolved"), 90, f"{ALERT} to reach the webhook as resolved", interval=0.25
        )
        assert resolved["labels"]["node"] == "churny"
        assert resolved["endsAt"] >= firing["startsAt"]
        assert not prom.query(f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}')
    finally:
        hook.stop()
