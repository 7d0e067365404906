"""/metrics served while the observer-toolkit sample capture is fed in equals independent computations over its States."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from exporter.app.runtime import build_hub
from exporter.server import build_app
from tests.support import independent as ind
from tests.support.procs import promtool
from tests.support.samples import series as parse
from tests.support.samples import total as metric_sum


async def test_metrics_match_independent_computation(fixture_path: Path) -> None:
    msgs = ind.decoded(fixture_path)
    hub = build_hub()
    async with TestClient(TestServer(build_app(hub))) as client:
        seen: list = []
        checked = 0
        for msg in msgs:
            hub.ingest("sample", msg)
            if msg.WhichOneof("payload") != "state":
                continue
            seen.append(msg.state)
            if len(seen) not in (1, 2, 7, 15, 30):
                continue
            text = await (await client.get("/metrics")).text()
            got = parse(text)
            st = msg.state
            assert metric_sum(got, "libp2p_connections", status="active") == ind.active_connections(st)
            for protocol, n in ind.streams_per_protocol(st).items():
                assert metric_sum(got, "libp2p_streams", protocol=protocol) == n, protocol
            assert metric_sum(got, "libp2p_streams") == sum(ind.streams_per_protocol(st).values())
            for status in ("active", "missing", "rejected", "candidate"):
                assert metric_sum(got, "libp2p_dht_peers", status=status) == ind.dht_peers_per_status(st)[status]
            assert metric_sum(got, "libp2p_swarm_connections_closed_total") == ind.closed_connections(seen)
            assert metric_sum(got, "libp2p_swarm_connections_opened_total") == ind.opened_connections(seen)
            assert metric_sum(got, "libp2p_exporter_snapshots_total") == len(seen)
            checked += 1
        assert checked == 5
        final = parse(await (await client.get("/metrics")).text())
    events = Counter(m.event.type.name for m in msgs if m.WhichOneof("payload") == "event")
    for kind, n in events.items():
        assert metric_sum(final, "libp2p_events_total", type=kind) == n
    queries = sum(n for k, n in events.items() if k.endswith("DHTQuery"))
    assert metric_sum(final, "libp2p_dht_query_duration_seconds_count") == queries
    assert ind.closed_connections(ind.states(msgs)) > 0  # the sample has closes to count


async def test_exposition_passes_promtool(fixture_path: Path) -> None:
    hub = build_hub()
    for msg in ind.decoded(fixture_path):
        hub.ingest("sample", msg)
    async with TestClient(TestServer(build_app(hub))) as client:
        text = await (await client.get("/metrics")).text()
        om = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await om.text()).rstrip().endswith("# EOF")
        assert (await client.get("/healthz")).status == 200
        index = await (await client.get("/")).text()
        assert "sample" in index and "go-libp2p" in index
    res = promtool("check", "metrics", stdin=text)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "" and res.stderr.strip() == ""
