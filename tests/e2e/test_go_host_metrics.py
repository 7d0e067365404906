"""Real go-libp2p hosts watched by the exporter, checked against go-libp2p's own metrics of the same host.

Five ``introspect-node`` processes on 127.0.0.1 (producers/go/cmd/introspect-node, one go-libp2p host
per process, so go-libp2p's package-level collectors are that host's), each with kad-dht in server mode.
Host ``w`` is watched by ``libp2p-exporter live`` (a subprocess) over the introspection protocol; the
four peers are scripted over their control API: connections in both directions over TCP and QUIC,
closed from either side and redialled over the other transport, short-lived and held
streams on two protocols. Then, within bounded waits, the exporter's numbers for ``w`` must EQUAL what
go-libp2p itself reports for ``w`` (docs/go-producer.md, "Checked against go-libp2p's own metrics",
says what each side counts):

- ``libp2p_swarm_connections_opened_total`` / ``_closed_total`` per direction and transport;
- open connections per direction and transport (go: opened minus closed) and per direction
  (go: ``libp2p_rcmgr_connections{scope="system"}``);
- open streams per protocol and direction (go: ``libp2p_rcmgr_streams{scope="protocol"}``);
- the DHT routing table's size (kad-dht exports no metric: ``RoutingTable().Size()`` from /dht).

The script's own counts are lower bounds on go-libp2p's (kad-dht may dial on its own), so neither side
can agree by being empty.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.go_nodes import ECHO, GO_CANNOT, HOLD, GoNode, start_go_node
from tests.support.observer import (
    Reader,
    cli,
    read_session_and_recording,
    ui_session,
)
from tests.support.panel_queries import OWN_PROOF, dashboards, graphs, panels_without_data, resolve_variables
from tests.support.procs import Proc, Prometheus, http_get, scrape_job, start_exporter, start_prometheus, wait_for
from tests.support.samples import Series, matching, series

OUT, IN = "outbound", "inbound"
TCP, QUIC = "tcp", "quic-v1"
# What the script does to w, per (direction, transport): lower bounds of go-libp2p's counts.
SCRIPT_OPENED = {(OUT, TCP): 1, (OUT, QUIC): 2, (IN, TCP): 2, (IN, QUIC): 2}
SCRIPT_CLOSED = {(OUT, TCP): 1, (IN, QUIC): 1, (IN, TCP): 1}


@dataclass
class Watched:
    w: GoNode
    peers: list[GoNode]
    exporter: Proc
    prom: Prometheus


def _exporter_series(exporter: Proc) -> Series:
    return series(http_get(exporter.url + "/metrics"))


@pytest.fixture(scope="module")
def watched(go_tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    work: Path = tmp_path_factory.mktemp("go-host-metrics")
    binary = go_tools["introspect-node"]
    started: list[Proc] = []
    try:
        nodes = []
        for name in ("w", "p1", "p2", "p3", "p4"):
            nodes.append(start_go_node(binary, work / name, name, "-dht", "-control"))
            started.append(nodes[-1].proc)
        w, p1, p2, p3, p4 = nodes
        # One connection open before the exporter watches: counted opened in its first State ("open when
        # first seen"), as go-libp2p counted it; w is never without peers in Prometheus' range (the
        # peerstore board divides by the fewest connected peers over the last hour).
        w.control("dial", addr=p1.addr(TCP))
        exporter = start_exporter(["live", "--target", f"w={w.url}", "--interval", "1s"], work / "exporter")
        started.append(exporter)
        prom = start_prometheus(work / "prom", [scrape_job("libp2p-exporter", exporter.port)])
        started.append(prom)
        wait_for(prom.targets_up, 30, "the exporter target to be up")
        # Nothing closes before the exporter's first State: it counts from there (a connection already
        # closed in that State is not counted).
        wait_for(
            lambda: matching(_exporter_series(exporter), "libp2p_peers", node="w"), 30, "the exporter's first State"
        )
        _script(w, p1, p2, p3, p4)
        yield Watched(w, [p1, p2, p3, p4], exporter, prom)
    finally:
        for proc in reversed(started):
            proc.stop()


def _script(w: GoNode, p1: GoNode, p2: GoNode, p3: GoNode, p4: GoNode) -> None:
    # Both directions, both transports (w -> p1 over TCP is open already).
    w.control("dial", addr=p2.addr(QUIC))
    p3.control("dial", addr=w.addr(TCP))
    p4.control("dial", addr=w.addr(QUIC))
    # Streams w opens and streams opened to w, held and short-lived, on two protocols.
    w.control("hold", peer=p1.peer_id, protocol=HOLD, n=2)
    w.control("hold", peer=p2.peer_id, protocol=HOLD, n=1)
    p3.control("hold", peer=w.peer_id, protocol=HOLD, n=2)
    p4.control("hold", peer=w.peer_id, protocol=ECHO, n=1)
    w.control("streams", peer=p2.peer_id, protocol=ECHO, n=5)
    p3.control("streams", peer=w.peer_id, protocol=ECHO, n=5)
    time.sleep(1.5)  # let one State see the first round (not needed for equality; it makes churn visible)
    # Churn: closed by w and by the peers, redialled over the other transport.
    w.control("close", peer=p1.peer_id)  # its held streams go with it
    p4.control("close", peer=w.peer_id)
    p3.control("close", peer=w.peer_id)
    w.control("dial", addr=p1.addr(QUIC))
    p4.control("dial", addr=w.addr(TCP))
    p3.control("dial", addr=w.addr(QUIC))
    w.control("hold", peer=p1.peer_id, protocol=HOLD, n=1)
    p3.control("release", protocol=HOLD)  # streams of the closed connection: already gone
    p3.control("hold", peer=w.peer_id, protocol=HOLD, n=1)
    p4.control("hold", peer=w.peer_id, protocol=ECHO, n=1)
    w.control("streams", peer=p4.peer_id, protocol=ECHO, n=3)


def _by(samples: Series, name: str, labels: tuple[str, ...], **match: str) -> dict[tuple[str, ...], float]:
    """``name`` summed per value of ``labels`` over the series that have ``match``; zeros dropped."""
    out: dict[tuple[str, ...], float] = {}
    want = set(match.items())
    for (n, lbl), v in samples.items():
        d = dict(lbl)
        if n == name and want <= set(lbl):
            k = tuple(d.get(label, "") for label in labels)
            out[k] = out.get(k, 0.0) + v
    return {k: v for k, v in out.items() if v}


def _minus(a: dict[tuple[str, ...], float], b: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
    out = {k: a.get(k, 0.0) - b.get(k, 0.0) for k in set(a) | set(b)}
    return {k: v for k, v in out.items() if v}


def comparison(w: GoNode, exporter: Proc) -> dict[str, tuple[object, object]]:
    """Each compared quantity as (the exporter's, go-libp2p's), taken now."""
    go, ex = w.metrics(), _exporter_series(exporter)
    dt = ("dir", "transport")
    go_opened = _by(go, "libp2p_swarm_connections_opened_total", dt)
    go_closed = _by(go, "libp2p_swarm_connections_closed_total", dt)
    ex_opened = _by(ex, "libp2p_swarm_connections_opened_total", dt, node="w")
    ex_closed = _by(ex, "libp2p_swarm_connections_closed_total", dt, node="w")
    return {
        "opened per dir, transport": (ex_opened, go_opened),
        "closed per dir, transport": (ex_closed, go_closed),
        "open connections per dir, transport (go: opened - closed)": (
            _by(ex, "libp2p_connections", dt, node="w", status="active"),
            _minus(go_opened, go_closed),
        ),
        "open connections per dir (go: rcmgr system scope)": (
            _by(ex, "libp2p_connections", ("dir",), node="w", status="active"),
            _by(go, "libp2p_rcmgr_connections", ("dir",), scope="system"),
        ),
        "open streams per protocol, dir (go: rcmgr protocol scopes)": (
            _by(ex, "libp2p_streams", ("protocol", "dir"), node="w", status="active"),
            _by(go, "libp2p_rcmgr_streams", ("protocol", "dir"), scope="protocol"),
        ),
        "routing table size (go: RoutingTable().Size())": (
            sum(matching(ex, "libp2p_dht_peers", node="w")),
            w.routing_table_size(),
        ),
    }


def test_the_exporter_agrees_with_go_libp2p_about_the_same_host(watched: Watched) -> None:
    last: dict[str, tuple[object, object]] = {}

    def agreed() -> bool:
        nonlocal last
        last = comparison(watched.w, watched.exporter)
        return all(ex == go for ex, go in last.values())

    try:
        wait_for(agreed, 60, "the exporter and go-libp2p to agree", interval=0.5)
    except AssertionError:
        diff = "\n".join(f"{what}:\n  exporter  {ex}\n  go-libp2p {go}" for what, (ex, go) in last.items() if ex != go)
        raise AssertionError(f"after 60 s the exporter still disagrees with go-libp2p:\n{diff}") from None
    # Not vacuous: go-libp2p counted at least what the script did, streams on both protocols are open,
    # and the routing table holds the peers.
    opened, closed = last["opened per dir, transport"][1], last["closed per dir, transport"][1]
    assert isinstance(opened, dict) and isinstance(closed, dict)
    for want, got in ((SCRIPT_OPENED, opened), (SCRIPT_CLOSED, closed)):
        for k, n in want.items():
            assert got.get(k, 0) >= n, (k, got)
    streams = last["open streams per protocol, dir (go: rcmgr protocol scopes)"][1]
    assert isinstance(streams, dict)
    assert streams.get((HOLD, OUT)) == 2 and streams.get((HOLD, IN)) == 1 and streams.get((ECHO, IN)) == 1, streams
    rt = last["routing table size (go: RoutingTable().Size())"][1]
    assert isinstance(rt, int) and rt >= 4


async def test_the_observer_reads_a_go_hosts_session_and_a_recording_of_it(
    observer: Reader, watched: Watched, tmp_path: Path, procs: list[Proc]
) -> None:
    """The vendored observer-toolkit data layer reads w's live session (spoken as the UI speaks it) and
    a ``--record`` recording of it, with churn and streams during both, with 0 failures.

    go-libp2p measures no per-stream traffic: w sends every Stream (and every Connection it could not
    measure) an empty Traffic, which the UI reads unchecked and the exporter reads as unset."""
    w, (p1, p2, _p3, _p4) = watched.w, watched.peers
    recordings = tmp_path / "recordings"
    recorder = start_exporter(
        ["live", "--target", f"w={w.url}", "--interval", "1s", "--record", str(recordings)], tmp_path / "live"
    )
    procs.append(recorder)
    wait_for(lambda: matching(_exporter_series(recorder), "libp2p_peers", node="w"), 30, "the recorder's first State")
    frames_file = tmp_path / "session.frames"
    first_state = asyncio.Event()
    session = asyncio.create_task(ui_session(w.url, 8, frames_file, first_state))
    await asyncio.wait_for(first_state.wait(), 30)  # churn only once the session takes events

    def churn() -> None:  # while both watch: a connection closed and redialled, streams opened and closed
        p2.control("close", peer=w.peer_id)
        p2.control("dial", addr=w.addr(TCP))
        p2.control("hold", peer=w.peer_id, protocol=HOLD, n=1)
        w.control("streams", peer=p1.peer_id, protocol=ECHO, n=3)

    await asyncio.to_thread(churn)
    await session
    assert recorder.stop() == 0, recorder.output()  # SIGTERM: the recording is complete on disk
    (recording,) = sorted(recordings.rglob("*.libp2p.trace"))
    reports = read_session_and_recording(observer, frames_file, recording)
    assert reports["live"]["decoded"]["state"] >= 8
    assert "go-libp2p" in cli("inspect", str(recording))


MACROS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m"}
# Panels a go-libp2p host cannot fill: GO_CANNOT (tests/support/go_nodes.py). Anything else without
# data fails. The pubsub board is fed by go-libp2p-pubsub's tracers, not by introspection:
# tests/e2e/test_go_gossipsub.py proves it with real Go nodes.


def _churn(w: GoNode, peers: list[GoNode], seconds: float) -> None:
    """Keep w busy for ``seconds``: a peer's connection closed and redialled over the other transport,
    short streams both ways, DHT queries, once a second (rate and quantile panels need them in range)."""
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        p = peers[i % len(peers)]
        p.control("close", peer=w.peer_id)
        p.control("dial", addr=w.addr(QUIC if i % 2 else TCP))
        w.control("streams", peer=p.peer_id, protocol=ECHO, n=2)
        p.control("streams", peer=w.peer_id, protocol=ECHO, n=2)
        w.control("query", peer=p.peer_id)
        i += 1
        time.sleep(1.0)


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.stem)
def test_every_panel_has_data_for_a_go_host(watched: Watched, path: Path) -> None:
    assert {"libp2p-pubsub"} == OWN_PROOF  # the one board not fed by introspection
    prom = watched.prom
    if not hasattr(prom, "churn_end"):  # once for every board: 20 s of churn in the 30 s range
        _churn(watched.w, watched.peers, 20)
        wait_for(
            lambda: (prom.value("count_over_time(libp2p_peers[30s])") or 0) >= 15, 30, "15 s of scrapes", interval=0.5
        )
        prom.churn_end = time.time()  # type: ignore[attr-defined]
    dash = json.loads(path.read_text())
    variables = resolve_variables(prom, dash)
    assert variables["node"] == ["w"]
    end: float = prom.churn_end  # type: ignore[attr-defined]  # every board over the same churned range
    _, failures = panels_without_data(
        prom, path, variables, MACROS, start=end - 30, end=end, step="2", allowed_empty={}
    )
    # Exactly the allowed panels are empty: one go-libp2p starts filling must leave the allow-list.
    empty = {f.split(" [", 1)[0] for f in failures}
    allowed = {title for board, title in GO_CANNOT if board == path.stem}
    assert empty == allowed, "\n".join(failures)


def test_the_allow_list_names_real_panels() -> None:
    titles = {(p.stem, panel["title"]) for p in dashboards() for panel in graphs(json.loads(p.read_text()))}
    assert set(GO_CANNOT) <= titles
