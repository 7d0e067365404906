"""A real go-libp2p host watched over the wire agrees with go-libp2p's own metrics of the same host.

``introspect-node`` (producers/go/cmd) runs one go-libp2p host per process, so go-libp2p's
package-level Prometheus collectors belong to that host alone. The subject serves introspection
(package introspect, with its probe and the kad-dht tracker) and its own metrics (swarm and resource
manager collectors; kad-dht's ``RoutingTable().Size()`` on ``/dht``: kad-dht exports no
routing-table metric). Three peers, each in its own process, connect to it and are disconnected and
redialled (churn, over TCP and QUIC, both directions) while the exporter watches the subject; ping
streams are held open both ways. Then, once the subject is quiet, the exporter's numbers must equal
go-libp2p's:

- ``libp2p_swarm_connections_opened_total`` / ``_closed_total`` per direction and transport;
- open connections per direction = ``libp2p_rcmgr_connections{scope="system"}``;
- open streams per direction and protocol = ``libp2p_rcmgr_streams{scope="protocol"}`` (ping, kad);
- the DHT routing table's size (``libp2p_dht_peers`` summed) = ``RoutingTable().Size()``.

Definitional differences (docs/go-producer.md): go-libp2p's security/muxer/ip labels are not compared
(the exporter derives them from the State; QUIC has neither in go-libp2p); the resource manager's
system scope also holds connections still in their handshake and streams before protocol
negotiation, so the comparison waits for a quiet host.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import http_get, start_exporter, wait_for

PING = "/ipfs/ping/1.0.0"
KAD = "/ipfs/kad/1.0.0"


class Node:
    """One introspect-node process, driven over stdin."""

    def __init__(self, binary: Path, workdir: Path, name: str) -> None:
        self.name = name
        self.err = open(workdir / f"{name}.stderr", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True, bufsize=1
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = json.loads(self._line(30.0))
        self.peer: str = ready["peer"]
        self.intro: str = ready["intro"]
        self.metrics_url: str = ready["metrics"]
        self.addrs: list[str] = ready["addrs"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def _line(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no answer within {timeout}s (exit {self.proc.poll()})") from None

    def addr(self, transport: str) -> str:
        return next(a for a in self.addrs if f"/{transport}/" in a)

    def do(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._line(20.0)
        assert answer == "ok", f"{self.name}: {command}: {answer}"

    def samples(self) -> list[Any]:
        return [s for f in text_string_to_metric_families(http_get(self.metrics_url)) for s in f.samples]

    def routing_table_size(self) -> int:
        return int(json.loads(http_get(self.metrics_url.replace("/metrics", "/dht")))["routing_table_size"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.err.close()


def _sum(samples: list[Any], name: str, keys: tuple[str, ...], **match: str) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
            out[tuple(s.labels.get(k, "") for k in keys)] += s.value
    return Counter({k: v for k, v in out.items() if v})


def _compare(subject: Node, exporter_url: str) -> dict[str, tuple[Any, Any]]:
    """Every quantity as (go-libp2p's, the exporter's); equal when the two agree."""
    go = subject.samples()
    ours = [s for f in text_string_to_metric_families(http_get(exporter_url + "/metrics")) for s in f.samples]
    ours = [s for s in ours if s.labels.get("node") == "subject"]
    dt = ("dir", "transport")
    rt = float(subject.routing_table_size())
    dht = sum(v for v in _sum(ours, "libp2p_dht_peers", ("status",)).values())
    return {
        "opened": (
            _sum(go, "libp2p_swarm_connections_opened_total", dt),
            _sum(ours, "libp2p_swarm_connections_opened_total", dt),
        ),
        "closed": (
            _sum(go, "libp2p_swarm_connections_closed_total", dt),
            _sum(ours, "libp2p_swarm_connections_closed_total", dt),
        ),
        "open connections": (
            _sum(go, "libp2p_rcmgr_connections", ("dir",), scope="system"),
            _sum(ours, "libp2p_connections", ("dir",), status="active"),
        ),
        **{
            f"{proto} streams": (
                _sum(go, "libp2p_rcmgr_streams", ("dir",), scope="protocol", protocol=proto),
                _sum(ours, "libp2p_streams", ("dir",), status="active", protocol=proto),
            )
            for proto in (PING, KAD)
        },
        "routing table": (rt, float(dht)),
    }


def test_go_host_agrees_with_go_libp2p_metrics(go_tools: dict[str, Path], tmp_path: Path) -> None:
    binary = go_tools["introspect-node"]
    nodes: list[Node] = []
    exporter = None
    try:
        subject = Node(binary, tmp_path, "subject")
        nodes.append(subject)
        exporter = start_exporter(["live", "--target", f"subject={subject.intro}"], tmp_path)
        wait_for(
            lambda: 'libp2p_exporter_up{node="subject"} 1.0' in http_get(exporter.url + "/metrics"),
            30.0,
            "the exporter's session with the subject",
        )
        peers = [Node(binary, tmp_path, f"peer{i}") for i in range(3)]
        nodes.extend(peers)
        p0, p1, p2 = peers
        # Inbound to the subject over TCP and QUIC, outbound from it over both; then churn.
        p0.do(f"connect {subject.addr('tcp')}")
        p1.do(f"connect {subject.addr('quic-v1')}")
        subject.do(f"connect {p2.addr('tcp')}")
        subject.do(f"disconnect {p0.peer}")
        subject.do(f"connect {p0.addr('quic-v1')}")
        subject.do(f"disconnect {p2.peer}")
        p2.do(f"connect {subject.addr('tcp')}")
        subject.do(f"disconnect {p1.peer}")
        p1.do(f"connect {subject.addr('quic-v1')}")
        # Streams held open both ways (go-libp2p's ping service allows two streams per peer).
        subject.do(f"ping {p1.peer} 2")
        subject.do(f"ping {p0.peer} 1")
        p2.do(f"ping {subject.peer} 2")

        last: dict[str, tuple[Any, Any]] = {}

        def agree() -> bool:
            nonlocal last
            last = _compare(subject, exporter.url)
            return all(a == b for a, b in last.values())

        try:
            wait_for(agree, 30.0, "the exporter to agree with go-libp2p's metrics", interval=0.5)
        except AssertionError:
            diff = {k: v for k, v in last.items() if v[0] != v[1]}
            raise AssertionError(f"go-libp2p vs exporter differ: {diff}\nall: {last}") from None
        opened, _ = last["opened"]
        assert {d for d, _ in opened} == {"inbound", "outbound"}, opened
        assert {t for _, t in opened} >= {"tcp", "quic-v1"} or sum(opened.values()) >= 6, opened
        assert sum(last["closed"][0].values()) >= 3, last["closed"]
        assert last[f"{PING} streams"][0] == Counter({("outbound",): 3, ("inbound",): 2}), last[f"{PING} streams"]
        assert last["routing table"][0] >= 1, "the subject's routing table stayed empty"

        # The held streams end: both sides see them go.
        subject.do("unping")
        p2.do("unping")
        wait_for(
            lambda: (c := _compare(subject, exporter.url)[f"{PING} streams"])[0] == c[1] == Counter(),
            30.0,
            "the ping streams to close on both sides",
            interval=0.5,
        )
    finally:
        if exporter is not None:
            exporter.stop()
        for n in nodes:
            n.stop()
