"""A real Prometheus scrapes `libp2p-exporter replay`; values read back through its HTTP API."""

from __future__ import annotations

from pathlib import Path

from tests.support import independent as ind
from tests.support.procs import Proc, scrape_job, start_exporter, start_prometheus, wait_for


def test_prometheus_scrapes_replayed_capture(fixture_path: Path, tmp_path: Path, procs: list[Proc]) -> None:
    exporter = start_exporter(["replay", str(fixture_path), "--speed", "0", "--node", "sample"], tmp_path / "exp")
    procs.append(exporter)
    prom = start_prometheus(tmp_path / "prom", [scrape_job("libp2p", exporter.port)])
    procs.append(prom)

    # Prometheus hands targets to the scraper on a 5 s tick: allow for the first scrape.
    wait_for(prom.targets_up, 20.0, "the exporter target to be up")
    msgs = ind.decoded(fixture_path)
    seq = ind.states(msgs)
    wait_for(lambda: prom.value('libp2p_exporter_snapshots_total{node="sample"}') == len(seq), 20.0, "all 30 states")

    last = seq[-1]
    assert prom.value('sum(libp2p_connections{status="active"})') == ind.active_connections(last)
    assert prom.value("sum(libp2p_swarm_connections_closed_total)") == ind.closed_connections(seq)
    assert prom.value("sum(libp2p_swarm_connections_opened_total)") == ind.opened_connections(seq)
    per_status = ind.dht_peers_per_status(last)
    assert prom.value('libp2p_dht_peers{status="missing"}') == per_status["missing"]
    ping = ind.streams_per_protocol(last)["/ipfs/ping/1.0.0"]
    assert prom.value('sum(libp2p_streams{protocol="/ipfs/ping/1.0.0"})') == ping
    info = prom.query("libp2p_node_info")
    assert info and info[0]["metric"]["implementation"] == "go-libp2p"
    assert prom.value("libp2p_exporter_up") == 1.0
    assert prom.value('up{job="libp2p"}') == 1.0
