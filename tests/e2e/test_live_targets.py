"""Many live targets against one test server process: /metrics, /probe, targets going away, and a
real Prometheus scraping /probe through the relabelling docs/live.md gives."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.introspect_server import FakeNode, IntrospectServer, ServerThread
from tests.support.procs import Proc, http_get, http_status, promtool, start_exporter, start_prometheus, wait_for
from tests.support.samples import series as parse

N = 50


def by_node(series: dict, name: str) -> dict[str, float]:
    """{node: value} for one metric (labels other than node ignored; use for single-series metrics)."""
    return {dict(k[1])["node"]: v for k, v in series.items() if k[0] == name}


def peer_ids(series: dict) -> dict[str, str]:
    return {dict(k[1])["node"]: dict(k[1])["peer_id"] for k in series if k[0] == "libp2p_node_info"}


@pytest.fixture
def server() -> Iterator[tuple[ServerThread, IntrospectServer]]:
    srv = IntrospectServer()
    for i in range(N):
        srv.add(f"{i:02d}", seed=100 + i, connections=4)
    srv.add("extra", seed=999, connections=3)
    srv.add("a", seed=501, connections=3)
    srv.add("b", seed=502, connections=3)
    thread = ServerThread(srv)
    with thread:
        yield thread, srv


def test_fifty_targets_metrics_probe_and_going_away(
    server: tuple[ServerThread, IntrospectServer], tmp_path: Path, procs: list[Proc]
) -> None:
    thread, srv = server
    cfg = {
        "defaults": {
            "interval": "300ms",
            "stale_intervals": 10,
            "labels": {"env": "test"},
        },  # 3 s of slack on a busy machine
        "session": {"backoff_initial": "100ms", "backoff_max": "500ms", "read_timeout": "2s"},
        "probe": {"idle_timeout": "1500ms", "enabled": True},
        "targets": [{"url": srv.url(f"{i:02d}"), "name": f"node-{i:02d}"} for i in range(N)],
    }
    path = tmp_path / "targets.yml"
    path.write_text(yaml.safe_dump(cfg))
    exp = start_exporter(["--config", str(path)], tmp_path)
    procs.append(exp)
    fakes: list[FakeNode] = [srv.nodes[f"{i:02d}"] for i in range(N)]

    def all_up() -> dict | None:
        s = parse(http_get(exp.url + "/metrics"))
        up = by_node(s, "libp2p_exporter_up")
        return s if len(up) == N and all(v == 1.0 for v in up.values()) else None

    series = wait_for(all_up, 60, "all 50 targets up")
    assert peer_ids(series) == {f"node-{i:02d}": fakes[i].data.peer_id for i in range(N)}
    assert all(dict(k[1]).get("env") == "test" for k in series if k[0] == "libp2p_exporter_up")
    assert len(set(peer_ids(series).values())) == N  # every node's own data, no mix-ups
    lint = promtool("check", "metrics", stdin=http_get(exp.url + "/metrics"))
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # /probe of a configured target: that node alone, from the running session (no new connection).
    connects_before = fakes[7].connects
    s = parse(http_get(exp.url + "/probe?target=" + urllib.parse.quote(srv.url("07"), safe="")))
    assert {dict(k[1])["node"] for k in s} == {"node-07"}
    assert peer_ids(s) == {"node-07": fakes[7].data.peer_id}
    assert fakes[7].connects == connects_before >= 1
    assert not any(k[0].startswith("libp2p_exporter_scrape") for k in s)

    # /probe of a new target starts a session; the next probe reuses it.
    extra = srv.nodes["extra"]
    q = exp.url + "/probe?target=" + urllib.parse.quote(srv.url("extra"), safe="")
    s = wait_for(lambda: (p := parse(http_get(q, timeout=15))) and peer_ids(p) and p, 30, "extra probed")
    assert list(peer_ids(s).values()) == [extra.data.peer_id]
    http_get(q)
    assert extra.connects == 1
    assert http_status(exp.url + "/probe?target=http://nope")[0] == 400

    # A target that goes away: down, its data no longer exported, the others untouched.
    thread.call(setattr, fakes[3], "mode", "down")

    def gone() -> dict | None:
        s = parse(http_get(exp.url + "/metrics"))
        return s if by_node(s, "libp2p_exporter_up").get("node-03") == 0.0 else None

    s = wait_for(gone, 30, "node-03 marked down")  # generous: a loaded machine scrapes 50 nodes slowly
    assert "node-03" not in by_node(s, "libp2p_peers")
    assert by_node(s, "libp2p_exporter_last_snapshot_timestamp_seconds").get("node-03")  # stays visible
    assert sum(1 for v in by_node(s, "libp2p_exporter_up").values() if v == 1.0) >= N - 1 - 1  # extra may idle out
    wait_for(
        lambda: parse(http_get(exp.url + "/metrics")).get(
            ("libp2p_exporter_session_failures_total", (("env", "test"), ("node", "node-03"), ("reason", "connect")))
        ),
        15,
        "node-03 reconnects failing",
    )

    # A probe-only target is never on /metrics (issue 13): /probe alone serves it.
    assert not any("extra" in dict(k[1]).get("node", "") for k in parse(http_get(exp.url + "/metrics")))

    # The probe-only target nobody asks for any more is closed.
    def reaped() -> bool:
        return not extra.live

    wait_for(reaped, 15, "idle probe session closed")
    assert len(by_node(parse(http_get(exp.url + "/metrics")), "libp2p_exporter_up")) == N


def test_prometheus_probe_relabelling_sets_instance_to_the_target(
    server: tuple[ServerThread, IntrospectServer], tmp_path: Path, procs: list[Proc]
) -> None:
    _, srv = server
    exp = start_exporter(["--interval", "300ms", "--probe.enable"], tmp_path / "exporter")
    procs.append(exp)
    targets = [srv.url("a"), srv.url("b")]
    # The scrape config documented in docs/live.md ("Many targets"), with this test's addresses.
    job = {
        "job_name": "libp2p-exporter-probe",
        "metrics_path": "/probe",
        "static_configs": [{"targets": targets}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": f"127.0.0.1:{exp.port}"},
        ],
    }
    prom = start_prometheus(tmp_path / "prom", [job])
    procs.append(prom)
    wait_for(prom.targets_up, 30, "prometheus probing both targets")

    def both() -> list | None:
        r = prom.query('libp2p_exporter_up{job="libp2p-exporter-probe"} == 1')
        return r if len(r) == 2 else None

    result = wait_for(both, 30, "both targets up in prometheus")
    assert sorted(r["metric"]["instance"] for r in result) == sorted(targets)
    info = prom.query('libp2p_node_info{job="libp2p-exporter-probe"}')
    want = {srv.url("a"): srv.nodes["a"].data.peer_id, srv.url("b"): srv.nodes["b"].data.peer_id}
    assert {r["metric"]["instance"]: r["metric"]["peer_id"] for r in info} == want
    assert srv.nodes["a"].connects == 1 and srv.nodes["b"].connects == 1  # later probes reuse the session
