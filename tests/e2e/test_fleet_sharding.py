"""Two sharded replicas, one real Prometheus that finds the nodes through each replica's /discovery.

Every node is scraped exactly once, through /probe on the replica that owns it, with its URL as
``instance`` and its name as ``node``; editing the config file and sending SIGHUP adds and removes
nodes without touching the others' sessions or counters.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.parse
from pathlib import Path

from exporter.sources.sharding import Shard
from tests.support.introspect_server import IntrospectServer, ServerThread
from tests.support.procs import (
    REPO,
    Proc,
    Prometheus,
    free_port,
    http_get,
    http_status,
    spawn,
    start_prometheus,
    wait_for,
)

NODES = [f"node-{i}" for i in range(8)]


def _config(path: Path, srv: IntrospectServer, names: list[str]) -> None:
    lines = ["defaults:", "  labels: {fleet: test}", "targets:"]
    lines += [f"  - {{name: {n}, url: '{srv.url(n)}', labels: {{role: r{n[-1]}}}}}" for n in names]
    path.write_text("\n".join(lines) + "\n")


def _replica(tmp_path: Path, cfg: Path, shard: int) -> Proc:
    port = free_port()
    cmd = [sys.executable, "-m", "exporter", "--config", str(cfg), "--interval", "300ms"]
    cmd += ["--shard", f"libp2p-exporter-{shard}", "--total-shards", "2", "--metrics.nodes", "none"]
    cmd += ["--web.listen-address", f"127.0.0.1:{port}"]
    proc = spawn(cmd, tmp_path / f"replica{shard}", "exporter", port, {"PYTHONPATH": str(REPO)})

    def ready() -> bool:
        if proc.proc.poll() is not None:
            raise AssertionError(f"replica {shard} exited {proc.proc.returncode}:\n{proc.output()}")
        http_get(proc.url + "/healthz", timeout=1.0)
        return True

    wait_for(ready, 20.0, f"replica {shard} to answer")
    return proc


def _discovered(replica: Proc) -> list[str]:
    return sorted(g["labels"]["__meta_libp2p_node"] for g in json.loads(http_get(replica.url + "/discovery")))


def _up_by_node(prom: Prometheus) -> dict[str, list[tuple[str, str, str]]]:
    """node -> [(instance, scraped address's replica, up value)] from Prometheus' own up series."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for r in prom.query('up{job="libp2p"}'):
        m = r["metric"]
        out.setdefault(m.get("node_name", ""), []).append((m["instance"], m["replica"], r["value"][1]))
    return out


def test_two_replicas_each_node_scraped_once_through_its_owner_and_reloads(tmp_path: Path, procs: list[Proc]) -> None:
    srv = IntrospectServer()
    for i, name in enumerate([*NODES, "node-new"]):
        srv.add(name, seed=700 + i, connections=2)
    shard = Shard(0, 2)
    owner = {n: shard.of(n) for n in [*NODES, "node-new"]}
    assert set(owner[n] for n in NODES) == {0, 1}, "the test wants nodes on both replicas"
    with ServerThread(srv):
        cfg = tmp_path / "targets.yml"
        _config(cfg, srv, NODES)
        replicas = [_replica(tmp_path, cfg, 0), _replica(tmp_path, cfg, 1)]
        procs.extend(replicas)
        for i, replica in enumerate(replicas):
            assert _discovered(replica) == sorted(n for n in NODES if owner[n] == i)

        job = {
            "job_name": "libp2p",
            "http_sd_configs": [{"url": r.url + "/discovery", "refresh_interval": "1s"} for r in replicas],
            "relabel_configs": [
                {"source_labels": ["__meta_libp2p_node"], "target_label": "node_name"},
                {"source_labels": ["__meta_libp2p_shard"], "target_label": "replica"},
            ],
        }
        prom = start_prometheus(tmp_path / "prom", [job])
        procs.append(prom)

        def all_up() -> dict[str, list[tuple[str, str, str]]] | None:
            ups = _up_by_node(prom)
            return ups if set(ups) == set(NODES) and all(v[0][2] == "1" for v in ups.values()) else None

        ups = wait_for(all_up, 30.0, "Prometheus to scrape every node through /discovery")
        for name in NODES:
            assert len(ups[name]) == 1, f"{name} is scraped {len(ups[name])} times: {ups[name]}"
            instance, replica, _ = ups[name][0]
            assert instance == srv.url(name)
            assert replica == str(owner[name]), f"{name} scraped through replica {replica}, owned by {owner[name]}"
        # The node's own series come once each, with the node's name and labels, never exported_*.
        snaps = prom.query('libp2p_exporter_snapshots_total{job="libp2p"}')
        assert sorted(r["metric"]["node"] for r in snaps) == sorted(NODES)
        for r in snaps:
            m = r["metric"]
            assert m["fleet"] == "test" and m["role"] == "r" + m["node"][-1] and m["instance"] == srv.url(m["node"])
            assert not any(k.startswith("exported_") for k in m), m
        # /metrics carries only the exporter's own health (--metrics.nodes none): no node twice.
        for replica in replicas:
            assert "libp2p_exporter_snapshots_total{" not in http_get(replica.url + "/metrics")

        # Reload: node-0 leaves, node-new joins; the others keep their sessions and counters.
        kept = [n for n in NODES if n != "node-0"]
        before = {r["metric"]["node"]: float(r["value"][1]) for r in snaps}
        _config(cfg, srv, [*kept, "node-new"])
        for replica in replicas:
            os.kill(replica.proc.pid, signal.SIGHUP)
        wait_for(
            lambda: (
                _discovered(replicas[owner["node-new"]]).count("node-new") == 1
                and all("node-0" not in _discovered(r) for r in replicas)
            ),
            10.0,
            "both replicas to reload",
        )

        def reloaded() -> dict[str, list[tuple[str, str, str]]] | None:
            ups = _up_by_node(prom)
            return ups if set(ups) == {*kept, "node-new"} and ups["node-new"][0][2] == "1" else None

        ups = wait_for(reloaded, 15.0, "Prometheus to follow the reload (node-0 gone, node-new up)")
        assert ups["node-new"][0][1] == str(owner["node-new"])
        after = {
            r["metric"]["node"]: float(r["value"][1])
            for r in prom.query('libp2p_exporter_snapshots_total{job="libp2p"}')
        }
        established = prom.query('libp2p_exporter_session_established_total{job="libp2p"}')
        for name in kept:
            assert after[name] >= before[name], f"{name}'s counter went back: {before[name]} -> {after[name]}"
        for r in established:
            assert float(r["value"][1]) == 1.0, f"{r['metric']['node']} reconnected on reload: {r}"
        resets = prom.query('resets(libp2p_exporter_snapshots_total{job="libp2p"}[1m]) > 0')
        assert resets == [], f"counters reset across the reload: {resets}"
        for replica in replicas:
            text = http_get(replica.url + "/metrics")
            assert "libp2p_exporter_config_last_reload_successful 1.0" in text
        # The other replica refuses a node it does not own (404), whatever /probe's policy.
        other = replicas[1 - owner["node-new"]]
        status, body = http_status(other.url + "/probe?target=" + urllib.parse.quote(srv.url("node-new")))
        assert status == 404 and "belongs to shard" in body
