"""Real go-libp2p hosts, one per process: producers/go/cmd/introspect-node (built by go_tools).

Each process runs one host on 127.0.0.1 (TCP and QUIC), serves introspection, go-libp2p's own
Prometheus metrics and kad-dht's routing-table size, and with ``-control`` takes scripted commands
(dial, close, short-lived and held streams) over HTTP, each answered when it is done.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import Proc, http_get, spawn, wait_for
from tests.support.samples import Series, series

ECHO = "/e2e/echo/1.0.0"
HOLD = "/e2e/hold/1.0.0"

# Dashboard panels a go-libp2p host cannot fill, with the reason (docs/go-producer.md, "The dashboards
# on a go-libp2p host"): the e2e tests over one Go host and over the Go swarm both hold every other
# panel to having data, and these to having none.
_NO_STREAM_BYTES = (
    "go-libp2p counts no bytes per stream (its BandwidthCounter's per-protocol totals have no place in a "
    "State): every Stream's traffic is sent empty, which the exporter reads as unset"
)
_NO_EVICTIONS = "go-libp2p's peerstore evicts no peers and counts none: evicted_peers is unset"
GO_CANNOT: dict[tuple[str, str], str] = {
    ("libp2p-peerstore", "Limit"): "go-libp2p's peerstore has no peer limit: max_peers is unset",
    ("libp2p-peerstore", "Evictions"): _NO_EVICTIONS,
    ("libp2p-peerstore", "Evictions per second"): _NO_EVICTIONS,
    ("libp2p-streams", "Protocol traffic"): _NO_STREAM_BYTES,
    ("libp2p-traffic", "Traffic by protocol (top 10)"): _NO_STREAM_BYTES,
}


@dataclass
class GoNode:
    name: str
    proc: Proc
    info: dict[str, Any]

    @property
    def peer_id(self) -> str:
        return str(self.info["peer_id"])

    @property
    def url(self) -> str:
        return str(self.info["introspect"])

    def addr(self, transport: str) -> str:
        """The listen address (with /p2p/) of ``transport``: "tcp" or "quic-v1"."""
        for a in self.info["addrs"]:
            if ("/quic-v1" in a) == (transport == "quic-v1"):
                return str(a)
        raise AssertionError(f"{self.name} has no {transport} address: {self.info['addrs']}")

    def control(self, cmd: str, **params: str | int) -> dict[str, Any]:
        """POST /control/CMD; fails the test with the node's own error text."""
        url = f"{self.info['http']}/control/{cmd}?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{self.name} {cmd} {params}: {exc.code} {exc.read().decode()}") from exc

    def metrics(self) -> Series:
        """go-libp2p's own metrics of this host."""
        return series(http_get(str(self.info["metrics"])))

    def routing_table_size(self) -> int:
        return int(json.loads(http_get(str(self.info["http"]) + "/dht"))["routing_table_size"])

    def runtime(self) -> dict[str, Any]:
        return json.loads(http_get(str(self.info["http"]) + "/runtime"))  # type: ignore[no-any-return]


def start_go_node(binary: Path, workdir: Path, name: str, *flags: str) -> GoNode:
    """Start one introspect-node and wait for its ready line."""
    proc = spawn([str(binary), *flags], workdir, name, 0)

    def ready() -> dict[str, Any] | None:
        if proc.proc.poll() is not None:
            raise AssertionError(f"{name} exited {proc.proc.returncode}:\n{proc.output()}")
        for line in proc.output().splitlines():
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]
        return None

    return GoNode(name, proc, wait_for(ready, 30, f"{name}'s ready line"))
