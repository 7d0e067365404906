"""Spans from the observer-toolkit sample: once over each real OTLP protocol (HTTP, gRPC) into
in-process receivers, and in memory for sampling and the open-span cap.

Expected values are computed here from the raw protobufs, independently of the diff tracker, and
compared with what arrived at the receiver over the socket.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.app.runtime import build_hub
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.otel.config import TracingConfig
from exporter.sinks.otel.install import TracingHandle, install_tracing
from exporter.sources.capture import iter_capture
from tests.support.otlp import GrpcReceiver, HttpReceiver, MemoryCollector, ReceivedSpan
from tests.support.reference import HubCollector, render

MS = 1_000_000
CLOSED = (pb.CLOSED, pb.ERROR)


@dataclass
class Life:
    open_ts: int
    end_ms: int | None = None  # None: still open at the end of the file
    last_seen: int = 0
    conn: bytes = b""


def expected_lives(path: Path) -> tuple[dict[bytes, Life], dict[tuple[bytes, bytes], Life], int, list[pb.Event]]:
    """Every connection and stream's start and end, straight from the States (docs/protocol.md §5)."""
    conns: dict[bytes, Life] = {}
    streams: dict[tuple[bytes, bytes], Life] = {}
    events: list[pb.Event] = []
    last_instant = 0
    for msg in iter_capture(path):
        kind = msg.WhichOneof("payload")
        if kind == "event":
            events.append(msg.event)
        if kind != "state":
            continue
        st = msg.state
        last_instant = st.instant_ts
        for c in st.subsystems.connections:
            life = conns.setdefault(c.id, Life(c.timeline.open_ts))
            life.open_ts = life.open_ts or c.timeline.open_ts  # a dialling connection has none yet
            life.last_seen = st.instant_ts
            c_closed = c.status in CLOSED or c.timeline.close_ts != 0
            if c_closed and life.end_ms is None:
                life.end_ms = c.timeline.close_ts or st.instant_ts
            for s in c.streams.streams:
                sl = streams.setdefault((c.id, s.id), Life(s.timeline.open_ts, conn=c.id))
                sl.last_seen = st.instant_ts
                if (s.status in CLOSED or s.timeline.close_ts or c_closed) and sl.end_ms is None:
                    end = s.timeline.close_ts
                    if not end:
                        end = min(st.instant_ts, c.timeline.close_ts or st.instant_ts)
                    sl.end_ms = end
    for life in [*conns.values(), *streams.values()]:
        if life.end_ms is None and life.last_seen < last_instant:
            life.end_ms = life.last_seen  # vanished: ends where it was last seen
    return conns, streams, last_instant, events


def feed(
    path: Path, receiver: HttpReceiver | GrpcReceiver | MemoryCollector, protocol: str = "", **cfg: object
) -> tuple[Hub, TracingHandle]:
    """Replay ``path`` into a traced hub: over OTLP (``protocol``) to a real receiver, or in memory."""
    hub = build_hub()
    if isinstance(receiver, MemoryCollector):
        handle = install_tracing(hub, cfg=TracingConfig(**cfg), send=receiver)
    else:
        handle = install_tracing(hub, cfg=TracingConfig(endpoint=receiver.endpoint, protocol=protocol, **cfg))  # type: ignore[arg-type]
    for msg in iter_capture(path):
        hub.ingest("sample", msg)
    handle.shutdown(timeout_s=20)
    return hub, handle


def by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.span.name == name]


def check_fixture_spans(spans: list[ReceivedSpan], fixture_path: Path) -> None:
    conns, streams, last_instant, events = expected_lives(fixture_path)
    conn_spans = by_name(spans, "libp2p.connection")
    stream_spans = by_name(spans, "libp2p.stream")
    dht_spans = by_name(spans, "libp2p.dht.query")

    # Exactly one span per distinct connection and stream, however many snapshots they were in.
    assert len(conn_spans) == len(conns) == 10
    assert len(stream_spans) == len(streams) == 96
    assert len({s.attrs["libp2p.connection.id"] for s in conn_spans}) == len(conns)

    by_conn = {bytes.fromhex(s.attrs["libp2p.connection.id"]): s for s in conn_spans}
    assert set(by_conn) == set(conns)
    for cid, life in conns.items():
        span = by_conn[cid].span
        attrs = by_conn[cid].attrs
        assert span.start_time_unix_nano == life.open_ts * MS, cid
        if life.end_ms is None:
            assert span.end_time_unix_nano == last_instant * MS
            assert attrs["libp2p.span.open_at_shutdown"] is True
            assert attrs["libp2p.end.inferred"] is True
        else:
            assert span.end_time_unix_nano == life.end_ms * MS
            assert "libp2p.span.open_at_shutdown" not in attrs
        assert attrs["libp2p.peer.id"]

    for s in stream_spans:
        cid = bytes.fromhex(s.attrs["libp2p.connection.id"])
        life = streams[(cid, bytes.fromhex(s.attrs["libp2p.stream.id"]))]
        assert s.span.start_time_unix_nano == life.open_ts * MS
        expected_end = last_instant if life.end_ms is None else life.end_ms
        assert s.span.end_time_unix_nano == expected_end * MS
        # Parent/child: the stream hangs under its own connection's span, in that span's trace.
        parent = by_conn[cid].span
        assert s.span.parent_span_id == parent.span_id
        assert s.span.trace_id == parent.trace_id
        assert s.attrs["libp2p.protocol"]
    assert len({s.span.trace_id for s in conn_spans}) == len(conns)  # one trace per connection

    # DHT queries: one span per event, duration totalTimeMs, ending at the event's time.
    dht_events = [e for e in events if e.type.name in ("InboundDHTQuery", "OutboundDHTQuery")]
    assert len(dht_spans) == len(dht_events) == 927
    want = Counter((e.ts * MS, json.loads(e.content)["totalTimeMs"] * MS) for e in dht_events)
    got = Counter(
        (s.span.end_time_unix_nano, s.span.end_time_unix_nano - s.span.start_time_unix_nano) for s in dht_spans
    )
    assert got == want
    results = Counter(json.loads(e.content)["result"] for e in dht_events)
    assert Counter(s.attrs["libp2p.dht.query.result"] for s in dht_spans) == results
    for s in dht_spans:
        code = s.span.status.code
        if s.attrs["libp2p.dht.query.result"] == "SUCCESS":
            assert code == s.span.status.STATUS_CODE_OK
        elif s.attrs["libp2p.dht.query.result"] in ("ERROR", "TIMEOUT"):
            assert code == s.span.status.STATUS_CODE_ERROR
        assert s.attrs["libp2p.dht.query.target"]
        assert s.attrs["libp2p.dht.query.steps"] >= 0
        assert None not in s.attrs.get("libp2p.dht.query.peers", [])

    # One node, one resource: the observed node, not the exporter.
    resources = {tuple(sorted(s.resource.items())) for s in spans}
    assert len(resources) == 1
    res = spans[0].resource
    assert res["service.name"] == "go-libp2p"
    assert res["service.instance.id"] == "8de3166db28fddb199f05be0acea65772e7a1b289086902160d1060e83dac2fd"
    assert res["libp2p.implementation"] == "go-libp2p"
    assert res["service.version"] == "2"


def test_fixture_spans_over_http(fixture_path: Path, http_receiver: HttpReceiver) -> None:
    hub, _ = feed(fixture_path, http_receiver, "http/protobuf")
    spans = http_receiver.spans()
    check_fixture_spans(spans, fixture_path)

    # Self-metrics agree with what arrived; metrics carry no peer ids or multiaddrs.
    body = render(HubCollector(hub))[0].decode()
    assert f'libp2p_exporter_spans_exported_total{{node="sample"}} {float(len(spans))}' in body
    assert 'libp2p_exporter_spans_export_failed_total{node="sample"} 0.0' in body
    peers = {s.attrs["libp2p.peer.id"] for s in by_name(spans, "libp2p.connection")}
    peers |= {p for s in by_name(spans, "libp2p.dht.query") for p in s.attrs.get("libp2p.dht.query.peers", [])}
    assert peers and not [p for p in peers if p in body]


def test_fixture_spans_over_grpc(fixture_path: Path, grpc_receiver: GrpcReceiver) -> None:
    feed(fixture_path, grpc_receiver, "grpc")
    check_fixture_spans(grpc_receiver.spans(), fixture_path)


def test_sampling_keeps_connections_and_a_share_of_streams(fixture_path: Path) -> None:
    memory = MemoryCollector()
    hub, _ = feed(fixture_path, memory, sample_streams=0.5, sample_dht=0.0)
    spans = memory.spans()
    n_streams = len(by_name(spans, "libp2p.stream"))
    assert len(by_name(spans, "libp2p.connection")) == 10
    assert 0 < n_streams < 96
    assert not by_name(spans, "libp2p.dht.query")
    body = render(HubCollector(hub))[0].decode()
    assert f'libp2p_exporter_spans_sampled_out_total{{kind="stream",node="sample"}} {float(96 - n_streams)}' in body
    assert 'libp2p_exporter_spans_sampled_out_total{kind="dht_query",node="sample"} 927.0' in body


def test_open_span_cap_drops_and_counts(fixture_path: Path) -> None:
    memory = MemoryCollector()
    hub, _ = feed(fixture_path, memory, max_open_spans=12, sample_dht=0.0)
    spans = memory.spans()
    tracked = by_name(spans, "libp2p.connection") + by_name(spans, "libp2p.stream")
    assert 0 < len(tracked) < 106
    body = render(HubCollector(hub))[0].decode()
    dropped = next(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith('libp2p_exporter_spans_dropped_total{node="sample",reason="open_cap"}')
    )
    assert dropped == 106 - len(tracked)


def test_collector_down_fills_a_bounded_queue_and_counts_everything(
    fixture_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.procs import free_port

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "50")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")
    hub = build_hub()
    cfg = TracingConfig(endpoint=f"http://127.0.0.1:{free_port()}", timeout_s=0.3)  # nothing listens
    handle = install_tracing(hub, cfg=cfg)
    for msg in iter_capture(fixture_path):
        hub.ingest("sample", msg)
    handle.shutdown(timeout_s=30)
    stats = handle.sink.book.get("sample")  # type: ignore[union-attr]
    started = sum(stats.started.values())
    assert started == 10 + 96 + 927
    assert stats.exported == 0
    assert stats.dropped["queue_full"] > 0
    assert stats.export_failed > 0 and stats.batches["failure"] > 0
    # Every span is accounted for: failed in export or dropped at the full queue.
    assert stats.export_failed + stats.dropped["queue_full"] == started
