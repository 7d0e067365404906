"""Every dashboard panel has data from a real Prometheus scraping the exporter that watches a Go swarm.

producers/go/cmd/introspect-swarm runs go-libp2p hosts on 127.0.0.1 (kad-dht, gossipsub, churn), each
introspected by package introspect with its probe and the DHT and pubsub providers; it writes the
exporter's ``--config``; ``libp2p-exporter live`` watches every host over the wire; a real Prometheus
scrapes it. Every query of every panel must return data, except exactly the panels
whose data go-libp2p cannot supply (GO_CANNOT in tests/support/go_nodes.py, and docs/go-producer.md). The pubsub
board needs gossipsub traces, not introspection, and has its own proof (test_go_gossipsub.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.go_nodes import GO_CANNOT
from tests.support.panel_queries import dashboards, panels_without_data, resolve_variables, substitute
from tests.support.procs import Prometheus, scrape_job, spawn, start_exporter, start_prometheus, wait_for

MACROS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m"}


@pytest.fixture(scope="module")
def go_stack(go_tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("go-dash")
    config = work / "targets.yml"
    swarm = spawn(
        [str(go_tools["introspect-swarm"]), "-n", "3", "-churn", "1s", "-config-out", str(config)],
        work / "swarm",
        "introspect-swarm",
        0,
    )
    exporter = prom = None
    try:
        wait_for(config.exists, 60, "the Go swarm's config file")
        exporter = start_exporter(["live", "--config", str(config)], work / "exporter")
        prom = start_prometheus(work / "prom", [scrape_job("libp2p-exporter", exporter.port)])
        wait_for(prom.targets_up, 30, "the exporter target to be up")
        # Enough history for rate() windows, with closed connections and streams.
        wait_for(
            lambda: (
                (prom.value("min(count_over_time(libp2p_peers[1m]))") or 0) >= 15
                and (prom.value("sum(rate(libp2p_stream_duration_seconds_count[10s]))") or 0) > 0
                and (prom.value("sum(rate(libp2p_swarm_connection_duration_seconds_count[10s]))") or 0) > 0
            ),
            90,
            "15 s of scraped churn",
            interval=0.5,
        )
        yield prom
    finally:
        for proc in (prom, exporter, swarm):
            if proc is not None:
                proc.stop()


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.stem)
def test_every_panel_has_data_from_the_go_swarm(go_stack: Prometheus, path: Path) -> None:
    prom = go_stack
    dash = json.loads(path.read_text())
    variables = resolve_variables(prom, dash)
    assert set(variables["node"]) == {"go-0", "go-1", "go-2"}
    end = time.time()
    _, failures = panels_without_data(
        prom, path, variables, MACROS, start=end - 30, end=end, step="2", allowed_empty={}
    )
    # Exactly the panels go-libp2p cannot fill are empty: one it starts filling must leave GO_CANNOT.
    empty = {f.split(" [", 1)[0] for f in failures}
    assert empty == {title for board, title in GO_CANNOT if board == path.stem}, "\n".join(failures)
    for annotation in dash["annotations"]["list"]:
        assert prom.api("query", query=substitute(annotation["expr"], variables, MACROS))["resultType"] == "vector"
