"""The Prometheus sink renders a node's block once per change, and serves it over HTTP in both formats,
gzipped when asked, with /probe equal to the node's part of /metrics."""

from __future__ import annotations

import asyncio
import gzip
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import server
from exporter.app.runtime import add_live_metrics, build_hub
from exporter.generator import SyntheticNode
from exporter.pipeline.hub import Hub
from exporter.pipeline.session import SessionStats
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.server import build_app, serve_exposition
from exporter.sinks.exposition import Format
from exporter.sinks.prometheus import SCRAPE_DURATION, Exposition
from tests.support.reference import HubCollector

TIMING = re.compile(rf"^{SCRAPE_DURATION.name} .*\n", re.M)


def feed(hub: Hub, name: str, synthetic: SyntheticNode, states: int = 1) -> None:
    for _ in range(states):
        for msg in decode_segments(encode_segment(synthetic.state())).messages:
            hub.ingest(name, msg)
        synthetic.step()


def two_nodes() -> tuple[Hub, dict[str, SyntheticNode]]:
    hub = build_hub()
    nodes = {f"node-{i}": SyntheticNode(connections=10, streams_per_conn=2, seed=i + 1) for i in range(2)}
    for name, synthetic in nodes.items():
        feed(hub, name, synthetic, 2)
    return hub, nodes


def comparable(body: bytes | str) -> str:
    """The body without the values that change by themselves: scrape timing and process_*."""
    text = TIMING.sub("", body if isinstance(body, str) else body.decode())
    return "".join(line for line in text.splitlines(keepends=True) if "process_" not in line)


def test_an_unchanged_node_is_not_rendered_again_and_a_changed_one_is() -> None:
    hub, synthetic = two_nodes()
    exp = Exposition(hub)
    first = exp.metrics()
    assert exp.renders == 2
    assert comparable(exp.metrics()) == comparable(first)
    exp.metrics(Format.OPENMETRICS)
    exp.probe("node-0")
    assert exp.renders == 2  # both formats and /probe come from the same blocks
    feed(hub, "node-1", synthetic["node-1"])
    after = exp.metrics()
    assert exp.renders == 3  # node-1 only
    assert after != first
    # What the blocks serve is what building every family afresh serves.
    assert comparable(after) == comparable(generate_latest(HubCollector(hub)))  # type: ignore[arg-type]


def test_freshness_session_and_new_mappers_re_render() -> None:
    hub, _ = two_nodes()
    exp = Exposition(hub)
    exp.metrics()
    node = hub.nodes["node-0"]
    node.stale_after_s = 1.0
    node.last_snapshot_wall = 0.0  # long ago: the node is stale now
    stale = exp.probe("node-0")
    assert exp.renders == 3
    assert b"libp2p_connections" not in stale and b'libp2p_exporter_up{node="node-0"} 0.0' in stale
    add_live_metrics(hub)  # a mapper added later (the app adds the session metrics after tracing's)
    exp.metrics()
    assert exp.renders == 5  # both nodes
    node.session = SessionStats(url="ws://127.0.0.1:1/")
    assert b"libp2p_exporter_session_frames_total" in exp.probe("node-0")
    node.session.frames["binary"] += 1  # the source writes the session outside the hub
    framed = exp.probe("node-0")
    assert exp.renders == 7
    assert b'libp2p_exporter_session_frames_total{node="node-0",type="binary"} 1.0' in framed
    exp.probe("node-0")
    assert exp.renders == 7


def test_a_recording_failure_after_the_last_change_shows_at_the_next_scrape() -> None:
    """The session's recording fields are exported too: a change to them alone re-renders the node
    (the version used to leave them out, so the failure stayed hidden behind the cached block)."""
    hub, _ = two_nodes()
    add_live_metrics(hub)
    node = hub.nodes["node-0"]
    node.session = SessionStats(url="ws://127.0.0.1:1/", recording=True)
    exp = Exposition(hub)
    before = exp.probe("node-0")
    assert b'libp2p_exporter_session_recording_failures_total{node="node-0"} 0.0' in before
    node.session.recording_failures += 1  # the source, outside the hub: nothing else changes
    after = exp.probe("node-0")
    assert b'libp2p_exporter_session_recording_failures_total{node="node-0"} 1.0' in after


def test_a_hidden_node_is_rendered_at_each_probe_and_its_block_not_kept() -> None:
    """``--metrics.nodes none``: a node served by /probe alone keeps no rendered block between probes
    (its version moves between two probes anyway; issue 20), and serves the same bytes as a cached one."""
    hub, _ = two_nodes()
    exp = Exposition(hub, process=False)
    fmts = (Format.TEXT, Format.OPENMETRICS, Format.PROTOBUF)
    cached = {fmt: exp.probe("node-0", fmt) for fmt in fmts}
    assert exp.renders == 2 and "node-0" in exp._cache  # text and protobuf, each rendered once
    hub.nodes["node-0"].hidden = True  # as a reload to --metrics.nodes none does
    assert {fmt: exp.probe("node-0", fmt) for fmt in fmts} == cached
    assert exp.renders == 5 and "node-0" not in exp._cache  # one render per probe; the old block let go
    assert exp.probe("node-0") == cached[Format.TEXT] and exp.renders == 6
    assert b'node="node-0"' not in exp.metrics() and "node-0" not in exp._cache
    hub.nodes["node-0"].hidden = False  # back on /metrics: cached again
    exp.probe("node-0")
    exp.probe("node-0")
    assert exp.renders == 8 and "node-0" in exp._cache  # node-0 once, node-1 by the /metrics above


def test_a_removed_node_leaves_and_a_new_one_of_that_name_starts_afresh() -> None:
    hub, _ = two_nodes()
    exp = Exposition(hub)
    exp.metrics()
    hub.remove("node-0")
    assert b'node="node-0"' not in exp.metrics()
    assert exp.probe("node-0") == b"" and exp.probe("node-0", Format.OPENMETRICS) == b"# EOF\n"
    feed(hub, "node-0", SyntheticNode(connections=3, streams_per_conn=1, seed=9))
    assert b'libp2p_exporter_snapshots_total{node="node-0"} 1.0' in exp.probe("node-0")


def test_openmetrics_ends_with_eof_and_matches_the_client() -> None:
    hub, _ = two_nodes()
    body = Exposition(hub).metrics(Format.OPENMETRICS)
    assert body.endswith(b"\n# EOF\n") and body.count(b"# EOF") == 1
    assert b"# TYPE process_cpu_seconds counter\n" in body
    want = generate_openmetrics(HubCollector(hub))  # type: ignore[arg-type]
    assert comparable(body) == comparable(want)


async def test_http_gzip_formats_and_probe_equal_to_the_nodes_part_of_metrics() -> None:
    hub, _ = two_nodes()

    async def probe(request: web.Request) -> web.StreamResponse:
        return await serve_exposition(request, request.query["node"])

    app = build_app(hub, extra_routes=[("GET", "/probe", probe)])
    async with TestClient(TestServer(app)) as client:
        # aiohttp's client decompresses transparently; the header says the wire was gzip.
        resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await resp.text()
        raw = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        wire = await raw.read()
        assert wire[:2] == b"\x1f\x8b" and len(wire) < len(text) / 3
        assert comparable(gzip.decompress(wire)) == comparable(text)
        plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers
        assert comparable(await plain.text()) == comparable(text)
        om = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"}
        )
        assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert (await om.text()).endswith("# EOF\n")
        whole = {(s.name, tuple(sorted(s.labels.items())), s.value) for fam in parse_text(text) for s in fam.samples}
        for name in ("node-0", "node-1"):
            part = await (await client.get("/probe", params={"node": name})).text()
            assert "libp2p_exporter_nodes" not in part and "process_" not in part
            got = {(s.name, tuple(sorted(s.labels.items())), s.value) for fam in parse_text(part) for s in fam.samples}
            assert got and got == {s for s in whole if dict(s[1]).get("node") == name}


async def test_metrics_streams_in_chunks_that_add_up_to_the_one_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """The body goes out a chunk at a time (not joined whole, then copied): with a tiny chunk size
    it is still, byte for byte, the exposition, plain and gzipped (one gzip stream over all chunks)."""
    hub, _ = two_nodes()
    monkeypatch.setattr(server, "CHUNK_BYTES", 200)
    app = build_app(hub)
    whole = Exposition(hub, process=False).metrics()
    async with TestClient(TestServer(app)) as client:
        plain = await (await client.get("/metrics", headers={"Accept-Encoding": "identity"})).read()
        raw = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert raw.headers["Content-Encoding"] == "gzip" and "Content-Length" not in raw.headers
        wire = await raw.read()
    assert len(whole) > 20 * 200
    assert comparable(plain) == comparable(whole) and comparable(gzip.decompress(wire)) == comparable(whole)


async def test_a_streamed_body_gives_the_loop_a_turn_after_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scraper that reads as fast as it is sent never fills the socket, so ``write`` never
    suspends; the other requests on the HTTP loop (``/healthz``) still get a turn after each chunk,
    not after the whole body."""
    order: list[str] = []

    async def write(chunk: bytes) -> None:  # a socket with room: returns without suspending
        order.append("chunk")

    async def health() -> None:
        for _ in range(3):
            order.append("health")
            await asyncio.sleep(0)

    monkeypatch.setattr(server, "CHUNK_BYTES", 200)
    parts = [b"x" * 100] * 8  # four chunks of 200 bytes
    for gz in (False, True):
        order.clear()
        other = asyncio.ensure_future(health())
        await server.send_chunks(write, parts, gz)
        await other
        assert order.count("chunk") == 4 + gz  # and gzip's flush
        last_chunk = len(order) - 1 - order[::-1].index("chunk")
        # Every turn the other task wanted came while the body was still going out, not after it.
        assert [i for i, what in enumerate(order) if what == "health"][-1] < last_chunk, order


def test_chunks_regroup_parts_without_losing_or_reordering_a_byte() -> None:
    parts = [b"a" * 3, b"b" * 5, b"c" * 40, b"d", b"e" * 2]
    got = list(server.chunks(parts, 8))
    assert b"".join(got) == b"".join(parts)
    assert got == [b"aaabbbbb", b"c" * 40, b"dee"]
    assert list(server.chunks([], 8)) == []
