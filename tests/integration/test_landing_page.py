"""The landing page and /config (issue 20): per node the age of its last State, the interval asked
and agreed, what was shed; links to /discovery, /config and each node's /probe; the running
configuration with credentials redacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.introspect_server import IntrospectServer, ServerThread
from tests.support.procs import Proc, http_get, start_exporter, wait_for


@pytest.fixture
def node_server() -> Iterator[IntrospectServer]:
    srv = IntrospectServer()
    srv.add("a")
    with ServerThread(srv):
        yield srv


def test_the_landing_page_and_config_show_the_fleet_without_secrets(
    node_server: IntrospectServer, tmp_path: Path, procs: list[Proc]
) -> None:
    url = node_server.url("a").replace("ws://", "ws://alice:hunter2@")
    exp = start_exporter(["--target", f"a={url}", "--interval", "200ms", "--probe.enable"], tmp_path)
    procs.append(exp)
    wait_for(lambda: 'libp2p_exporter_up{node="a"} 1.0' in http_get(exp.url + "/metrics"), 30, "node a up")
    page = http_get(exp.url + "/")
    assert '<a href="/discovery">Discovery</a>' in page and '<a href="/config">Configuration</a>' in page
    row = page[page.index("<td>a</td>") :].split("</tr>")[0]
    assert "<td>up</td>" in row and "0.2s / 0.2s" in row  # interval asked / agreed
    assert "<td>0 / 0</td>" in row  # nothing shed
    last_state = row.split("</td><td>")[5]
    assert last_state.endswith("s") and float(last_state[:-1]) < 30, row
    redacted = node_server.url("a").replace("ws://", "ws://***@")
    href = "/probe?target=" + quote(redacted, safe="")
    assert f'href="{href}"' in row
    assert "hunter2" not in page and "alice" not in page
    assert "libp2p_swarm_connections" in http_get(exp.url + href)  # the link serves the node
    config = http_get(exp.url + "/config")
    assert "hunter2" not in config and "alice" not in config and "***@127.0.0.1" in config
    assert "budget: 0.8" in config and "interval_ms: 200" in config, config
