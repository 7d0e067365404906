"""``libp2p-exporter demo``: real py-libp2p nodes over the wire show their peerstores on /metrics."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import Proc, http_get, start_exporter, wait_for

pytest.importorskip("libp2p")

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def series(text: str) -> Series:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def where(got: Series, name: str, **labels: str) -> dict[str, float]:
    """Values of ``name`` with ``labels``, by node."""
    want = set(labels.items())
    return {dict(lbl)["node"]: v for (n, lbl), v in got.items() if n == name and want <= lbl}


def test_the_demo_shows_each_nodes_peerstore(tmp_path: Path, procs: list[Proc]) -> None:
    proc = start_exporter(["demo", "--nodes", "4", "--duration", "40", "--seed", "2"], tmp_path)
    procs.append(proc)
    minor = ".".join(version("libp2p").split(".")[:2])

    def identified() -> Series | None:
        got = series(http_get(proc.url + "/metrics"))
        agents = where(got, "libp2p_peerstore_agent_peers", agent="py-libp2p", version=minor)
        return got if len(agents) == 4 and all(v > 0 for v in agents.values()) else None

    got = wait_for(identified, 35.0, "py-libp2p agents in every node's peerstore metrics", interval=0.5)
    known = where(got, "libp2p_peerstore_peers", kind="known")
    connected = where(got, "libp2p_peers")
    assert set(known) == set(connected) and len(known) == 4
    for node, n in known.items():
        assert n >= connected[node] > 0, (node, n, connected[node])  # it keeps every connected peer
    assert all(v > 0 for v in where(got, "libp2p_peerstore_protocol_peers", protocol="/ipfs/kad/1.0.0").values())
    assert set(where(got, "libp2p_peerstore_max_peers").values()) == {1000.0}  # py-libp2p's default limit
    assert not where(got, "libp2p_peerstore_evictions_total")  # py-libp2p does not count them
    assert sum(where(got, "libp2p_peerstore_addresses_per_peer_gsum").values()) > 0
    assert not [lbl for (n, lbl) in got if n.startswith("libp2p_peerstore") and any(k == "peer_id" for k, _ in lbl)]
    assert "Traceback" not in proc.output()
