"""The boards work whatever Prometheus calls the exporter's job (issue 21, item 8).

A user's Prometheus named the job ``libp2p``; the Exporter health board's "Scrape target up" panel had
the rules' job regex built in and showed nothing. Here a real Prometheus scrapes the churn feeder
under that job name only; the boards' ``job`` variable finds it, and every panel of the Exporter health
and Overview boards returns data, "Scrape target up" from the ``libp2p`` job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.generate import JSON_DIR, REPO
from tests.support.panel_queries import graphs, panels_without_data, resolve_variables, substitute
from tests.support.procs import Prometheus, scrape_job, start_exporter, start_prometheus, wait_for

MACROS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m"}
JOB = "libp2p"
BOARDS = [REPO / JSON_DIR / "libp2p-exporter-health.json", REPO / JSON_DIR / "libp2p-overview.json"]


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    work: Path = tmp_path_factory.mktemp("any-job")
    feeder = start_exporter(
        ["--churn", "0.3", "--interval", "0.5"], work / "feeder", module="tests.support.churn_feeder"
    )
    prom = start_prometheus(work / "prom", [scrape_job(JOB, feeder.port)])
    try:
        wait_for(prom.targets_up, 30, "the feeder target to be up")
        wait_for(
            lambda: (prom.value("count_over_time(libp2p_peers[1m])") or 0) >= 12,
            60,
            "12 s of scraped churn",
            interval=0.5,
        )
        yield prom
    finally:
        prom.stop()
        feeder.stop()


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_every_panel_has_data_under_any_job_name(prom: Prometheus, path: Path) -> None:
    dash = json.loads(path.read_text())
    variables = resolve_variables(prom, dash)
    assert variables["job"] == [JOB]
    end = time.time()
    _, failures = panels_without_data(
        prom, path, variables, MACROS, start=end - 20, end=end, step="2", allowed_empty={}
    )
    assert not failures, "\n".join(failures)


def test_scrape_target_up_is_the_jobs_up(prom: Prometheus) -> None:
    dash = json.loads(BOARDS[0].read_text())
    (panel,) = [p for p in graphs(dash) if p["title"] == "Scrape target up"]
    expr = substitute(panel["targets"][0]["expr"], resolve_variables(prom, dash), MACROS)
    result = prom.api("query", query=expr)["result"]
    assert result and all(s["metric"]["job"] == JOB and s["value"][1] == "1" for s in result), result
