"""Pubsub traces through the pipeline's public entry: ``Hub.ingest_traces`` feeds trace mappers and
listeners, the Prometheus sink writes them in full scrapes only, the app adds them only when asked,
and the trace sources' own counters (files, collector) reach the exposition through the mapper."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from exporter.app.flags import add_serving_flags, settings_from_args
from exporter.app.pubsub import wire_pubsub
from exporter.app.runtime import build_hub
from exporter.mappers.pubsub import PubsubMetrics
from exporter.pipeline.hub import Hub, Listener
from exporter.pipeline.traces import TraceIntakeStats, TraceMapper
from exporter.protocol.pubsub_codec import TraceEvent, b58, b58_decode
from exporter.settings import Settings
from exporter.sources.pubsub_trace import feed_trace_file, read_trace_file
from tests.support.reference import HubCollector, render

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "pubsub"
T = TraceEvent.Type


def exposition(hub: Hub, *, with_globals: bool = True) -> str:
    return render(HubCollector(hub, with_globals=with_globals))[0].decode()


class Recorder(TraceMapper, Listener):
    """A trace mapper and a listener at once, remembering what reached it."""

    name = "recorder"

    def __init__(self) -> None:
        self.batches: list[tuple[str, int]] = []
        self.ended: list[str] = []

    def on_traces(self, origin: str, events: Sequence[TraceEvent]) -> None:
        self.batches.append((origin, len(events)))

    def on_traces_ended(self, origin: str) -> None:
        self.ended.append(origin)


def test_ingest_traces_reaches_trace_mappers_and_listeners_and_a_file_ends() -> None:
    hub = build_hub()
    mapper, listener = Recorder(), Recorder()
    hub.add_trace_mapper(mapper)
    hub.add_listener(listener)
    path = str(DATA / "node0.pb")
    stats = feed_trace_file(hub, path)
    events, _ = read_trace_file(path)
    assert stats.events == len(events) > 0
    assert sum(n for _, n in mapper.batches) == len(events) and {o for o, _ in mapper.batches} == {path}
    assert listener.batches == mapper.batches
    assert mapper.ended == [path] and listener.ended == []  # listeners hear events; ends are for mappers
    with pytest.raises(ValueError, match="already on this hub"):
        hub.add_trace_mapper(Recorder())


def test_pubsub_families_in_full_scrapes_only_and_none_without_a_trace_mapper() -> None:
    hub = build_hub()
    assert "libp2p_pubsub_" not in exposition(hub)
    metrics = PubsubMetrics(hub.cardinality)
    hub.add_trace_mapper(metrics)
    feed_trace_file(hub, str(DATA / "node1.json"))
    full = exposition(hub)
    assert "libp2p_pubsub_delivered_messages_total{" in full and "libp2p_pubsub_traced_nodes 1.0" in full
    assert "libp2p_pubsub_" not in exposition(hub, with_globals=False)  # a /probe is one node's


def flags(*argv: str) -> Settings:
    p = argparse.ArgumentParser()
    add_serving_flags(p)
    return settings_from_args(p.parse_args(list(argv)))


def test_the_app_adds_nothing_without_pubsub_flags() -> None:
    hub = build_hub()
    settings = flags()
    assert wire_pubsub(hub, settings.pubsub, settings.tracing) is None
    assert hub.trace_mappers == ()


def test_the_app_reads_files_and_the_file_counters_reach_the_exposition(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pb"
    damaged.write_bytes((DATA / "node0.pb").read_bytes() + b"\x05\x08")  # a torn record at the end
    hub = build_hub()
    settings = flags("--pubsub.file", str(damaged), "--pubsub.topics", "a,b")
    wiring = wire_pubsub(hub, settings.pubsub, settings.tracing)
    assert wiring is not None and [m.name for m in hub.trace_mappers] == ["pubsub"]
    asyncio.run(wiring.start(settings.pubsub))
    assert wiring.intake.files == 1 and sum(wiring.intake.file_errors.values()) >= 1
    text = exposition(hub)
    assert "libp2p_pubsub_file_errors_total{" in text
    assert "libp2p_pubsub_collector_" not in text  # no collector was started


def test_a_gone_collector_peer_loses_its_mesh_at_the_next_scrape() -> None:
    intake = TraceIntakeStats()
    hub = build_hub()
    metrics = PubsubMetrics(hub.cardinality, intake=intake)
    hub.add_trace_mapper(metrics)
    peer = b"\x00\x24" + b"p" * 32
    join = TraceEvent(type=T.JOIN, peerID=peer, timestamp=1)
    join.join.topic = "t"
    graft = TraceEvent(type=T.GRAFT, peerID=peer, timestamp=2)
    graft.graft.topic, graft.graft.peerID = "t", b"\x00\x24" + b"q" * 32
    hub.ingest_traces(b58(peer), [join, graft])
    assert 'libp2p_pubsub_mesh_peer_counts{node="' + b58(peer) + '",topic="t"} 1.0' in exposition(hub)
    intake.collector.ended[b58(peer)] = -1e9  # its last stream ended long ago
    text = exposition(hub)
    assert "libp2p_pubsub_mesh_peer_counts{" not in text
    assert 'libp2p_pubsub_mesh_grafts_total{node="' + b58(peer) + '",topic="t"} 1.0' in text  # counters stay


def test_base58_round_trip() -> None:
    raw = b"\x00\x00\x24\x08\x01" + bytes(range(32))
    assert b58_decode(b58(raw)) == raw
    assert b58_decode("0OIl") == b""
