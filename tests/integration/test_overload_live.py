"""Always stop: a live exporter busy ingesting large States and rendering a scrape still answers
/healthz and exits on SIGTERM (bounded waits that fail loudly; no timing asserted)."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.introspect_server import IntrospectServer, ServerThread
from tests.support.procs import Proc, http_get, start_exporter, wait_for

N = 10


@pytest.fixture
def busy_server() -> Iterator[IntrospectServer]:
    srv = IntrospectServer()
    for i in range(N):
        srv.add(f"{i:02d}", seed=300 + i, connections=300)
    with ServerThread(srv):
        yield srv


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_busy_exporter_answers_health_and_stops_on_signal(
    busy_server: IntrospectServer, tmp_path: Path, procs: list[Proc], sig: signal.Signals
) -> None:
    cfg = {
        "defaults": {"interval": "200ms"},
        "targets": [{"url": busy_server.url(f"{i:02d}"), "name": f"node-{i:02d}"} for i in range(N)],
    }
    path = tmp_path / "targets.yml"
    path.write_text(yaml.safe_dump(cfg))
    exp = start_exporter(["--config", str(path)], tmp_path)
    procs.append(exp)
    wait_for(lambda: 'libp2p_exporter_up{node="node-09"} 1.0' in http_get(exp.url + "/metrics", 30), 60, "all up")

    # Scrapes in flight while the signal arrives; their outcome does not matter, the exit does.
    def scrape() -> None:
        try:
            http_get(exp.url + "/metrics", timeout=30)
        except Exception:  # the exporter may go away mid-scrape: that is the point
            return

    scrapers = [threading.Thread(target=scrape, daemon=True) for _ in range(3)]
    for t in scrapers:
        t.start()
    assert http_get(exp.url + "/healthz").strip() == "ok"  # answered while busy (5 s bound)
    exp.proc.send_signal(sig)
    try:
        code = exp.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        exp.proc.kill()
        exp.proc.wait(10)
        raise AssertionError(f"the exporter ignored {sig.name} for 10 s:\n{exp.output()[-3000:]}") from None
    assert code == 0, exp.output()[-3000:]
