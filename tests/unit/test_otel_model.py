"""The span model on hand-built States: addresses, relays, errors, restarts and odd DHT events.

Spans go to in-memory exporters (tests/support/otlp.py); test_otel_spans.py keeps the real OTLP paths."""

from __future__ import annotations

import json

import pytest

from exporter.app.runtime import build_hub
from exporter.model.multiaddr import parse
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.otel.config import TracingConfig, http_traces_url
from exporter.sinks.otel.install import TracingHandle, install_tracing
from exporter.sinks.otel.spans import keep
from tests.support.otlp import MemoryCollector, ReceivedSpan
from tests.support.reference import HubCollector, render

MS = 1_000_000
T0 = 1_700_000_000_000
PEER_A = "12D3KooWRelayRelayRelayRelayRelayRelayRelayRelay1"
PEER_B = "12D3KooWFarFarFarFarFarFarFarFarFarFarFarFarFarFar2"


@pytest.fixture
def receiver() -> MemoryCollector:
    return MemoryCollector()


def runtime(peer: str = "12D3KooWSelf") -> pb.ServerMessage:
    return pb.ServerMessage(
        runtime=pb.Runtime(implementation="py-libp2p", version="0.2.9", platform="linux", peer_id=peer)
    )


def conn(cid: bytes, peer: str, src: str, dst: str, **kw: object) -> pb.Connection:
    c = pb.Connection(id=cid, peer_id=peer, endpoints=pb.EndpointPair(src_multiaddr=src, dst_multiaddr=dst))
    c.timeline.open_ts = kw.pop("open_ts", T0)  # type: ignore[assignment]
    for name in ("upgraded_ts", "close_ts"):
        if name in kw:
            setattr(c.timeline, name, kw.pop(name))
    c.attribs.encryption = "/noise"
    c.attribs.multiplexer = "/yamux/1.0.0"
    c.traffic.traffic_in.cum_bytes = 1000
    c.traffic.traffic_out.cum_bytes = 2000
    for key, value in kw.items():
        if key == "relayed_over":
            c.conn_id = value  # type: ignore[assignment]
        else:
            setattr(c, key, value)
    return c


def state(ts: int, *conns: pb.Connection) -> pb.ServerMessage:
    st = pb.State(instant_ts=ts, start_ts=T0)
    st.subsystems.connections.extend(conns)
    return pb.ServerMessage(state=st)


def run(receiver: MemoryCollector, msgs: list[pb.ServerMessage], **cfg: object) -> tuple[Hub, list[ReceivedSpan]]:
    hub = build_hub()
    handle: TracingHandle = install_tracing(hub, cfg=TracingConfig(**cfg), send=receiver)
    for msg in msgs:
        hub.ingest("n1", msg)
    handle.shutdown(timeout_s=20)
    return hub, receiver.spans()


def test_relay_link_error_status_addresses_and_upgrade_event(receiver: MemoryCollector) -> None:
    relay = conn(
        b"R",
        PEER_A,
        "/ip4/10.0.0.1/tcp/4001",
        "/ip4/203.0.113.5/tcp/4001",
        role=pb.INITIATOR,
        upgraded_ts=T0 + 40,
    )
    far = conn(
        b"F",
        PEER_B,
        "/ip6/2001:db8::1/udp/4001/quic-v1",
        f"/ip4/203.0.113.5/tcp/4001/p2p/{PEER_A}/p2p-circuit/p2p/{PEER_B}",
        role=pb.RESPONDER,
        relayed_over=b"R",
        open_ts=T0 + 100,
    )
    far_err = pb.Connection()
    far_err.CopyFrom(far)
    far_err.status = pb.ERROR
    far_err.timeline.close_ts = T0 + 900
    msgs = [runtime(), state(T0 + 1000, relay, far), state(T0 + 2000, relay, far_err), state(T0 + 3000, relay)]
    _, spans = run(receiver, msgs)
    conns = {s.attrs["libp2p.connection.id"]: s for s in spans if s.span.name == "libp2p.connection"}
    assert set(conns) == {b"R".hex(), b"F".hex()}
    r, f = conns[b"R".hex()], conns[b"F".hex()]

    # The relayed connection links to its relay connection's span.
    assert [(link.trace_id, link.span_id) for link in f.span.links] == [(r.span.trace_id, r.span.span_id)]
    assert f.attrs["libp2p.relayed"] is True and r.attrs["libp2p.relayed"] is False

    # Ended in ERROR: status ERROR, end at close_ts.
    assert f.span.status.code == f.span.status.STATUS_CODE_ERROR
    assert f.span.end_time_unix_nano == (T0 + 900) * MS
    assert f.attrs["libp2p.end.inferred"] is False

    # Addresses and ports parsed from multiaddrs; we dialled R, so R's remote is the server.
    assert r.span.kind == r.span.SPAN_KIND_CLIENT
    assert r.attrs["network.transport"] == "tcp"
    assert r.attrs["network.type"] == "ipv4"
    assert (r.attrs["network.peer.address"], r.attrs["network.peer.port"]) == ("203.0.113.5", 4001)
    assert (r.attrs["network.local.address"], r.attrs["network.local.port"]) == ("10.0.0.1", 4001)
    assert (r.attrs["server.address"], r.attrs["client.address"]) == ("203.0.113.5", "10.0.0.1")
    assert (r.attrs["libp2p.connection.security"], r.attrs["libp2p.connection.muxer"]) == ("noise", "yamux")
    assert (r.attrs["libp2p.connection.bytes_received"], r.attrs["libp2p.connection.bytes_sent"]) == (1000, 2000)
    assert [(e.name, e.time_unix_nano) for e in r.span.events] == [("libp2p.connection.upgraded", (T0 + 40) * MS)]
    # R was still open when the source stopped: ended at the last instant, marked.
    assert r.attrs["libp2p.span.open_at_shutdown"] is True
    assert r.span.end_time_unix_nano == (T0 + 3000) * MS

    # F answered (responder): the far side is the client.
    assert f.span.kind == f.span.SPAN_KIND_SERVER
    assert f.attrs["client.address"] == "203.0.113.5"
    assert f.attrs["server.address"] == "2001:db8::1"
    assert f.attrs["network.local.port"] == 4001


def test_vanished_connection_ends_where_last_seen(receiver: MemoryCollector) -> None:
    a = conn(b"A", PEER_A, "/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/2")
    b = conn(b"B", PEER_B, "/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.3/tcp/3")
    _, spans = run(receiver, [runtime(), state(T0 + 1000, a, b), state(T0 + 2000, a, b), state(T0 + 3000, b)])
    conns = {s.attrs["libp2p.connection.id"]: s for s in spans}
    gone = conns[b"A".hex()]
    assert gone.span.end_time_unix_nano == (T0 + 2000) * MS
    assert gone.attrs["libp2p.end.inferred"] is True
    assert "libp2p.span.open_at_shutdown" not in gone.attrs
    assert conns[b"B".hex()].attrs["libp2p.span.open_at_shutdown"] is True


def test_new_peer_id_gets_a_new_resource(receiver: MemoryCollector) -> None:
    a = conn(b"A", PEER_A, "/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/2")
    b = conn(b"B", PEER_B, "/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.3/tcp/3", open_ts=T0 + 5000)
    msgs = [runtime("12D3KooWOld"), state(T0 + 1000, a), runtime("12D3KooWNew"), state(T0 + 6000, b)]
    _, spans = run(receiver, msgs)
    who = {s.attrs["libp2p.connection.id"]: s.resource["service.instance.id"] for s in spans}
    assert who == {b"A".hex(): "12D3KooWOld", b"B".hex(): "12D3KooWNew"}
    old = next(s for s in spans if s.attrs["libp2p.connection.id"] == b"A".hex())
    assert old.span.end_time_unix_nano == (T0 + 1000) * MS
    assert all(s.resource["service.name"] == "py-libp2p" for s in spans)


def test_dht_events_with_string_numbers_and_bad_content(receiver: MemoryCollector) -> None:
    def event(name: str, content: str, ts: int) -> pb.ServerMessage:
        return pb.ServerMessage(event=pb.Event(type=pb.EventType(name=name), ts=ts, content=content))

    good = {
        "direction": "OUTBOUND",
        "queryId": "q1",
        "targetPeerId": PEER_B,
        "totalTimeMs": "250",
        "totalSteps": "3",
        "trigger": "DISCOVERY",
        "type": "PROVIDER",
        "result": "TIMEOUT",
        "peerIds": [PEER_A, None, PEER_B],
    }
    msgs = [
        runtime(),
        event("OutboundDHTQuery", json.dumps(good), T0 + 1000),
        event("InboundDHTQuery", "{not json", T0 + 1100),
        event("InboundDHTQuery", json.dumps({"result": "SUCCESS"}), T0 + 1200),  # no duration
        event("PeerConnecting", json.dumps({"peerId": PEER_A}), T0 + 1300),
    ]
    hub, spans = run(receiver, msgs)
    assert len(spans) == 1
    s = spans[0]
    assert s.span.name == "libp2p.dht.query"
    assert s.span.end_time_unix_nano == (T0 + 1000) * MS
    assert s.span.end_time_unix_nano - s.span.start_time_unix_nano == 250 * MS
    assert s.span.kind == s.span.SPAN_KIND_CLIENT
    assert s.span.status.code == s.span.status.STATUS_CODE_ERROR
    assert s.attrs["libp2p.dht.query.steps"] == 3
    assert s.attrs["libp2p.dht.query.peers"] == [PEER_A, PEER_B]
    assert (s.attrs["libp2p.dht.query.type"], s.attrs["libp2p.dht.query.trigger"]) == ("PROVIDER", "DISCOVERY")
    body = render(HubCollector(hub))[0].decode()
    assert 'libp2p_exporter_spans_dropped_total{node="n1",reason="bad_event"} 2.0' in body


def test_unusable_query_numbers_are_bad_events_on_both_sides(receiver: MemoryCollector) -> None:
    """NaN, infinite or boolean durations are one parse (the pipeline's): no span and ``bad_event``
    on the span side (a NaN used to raise per event, counted as ``error``), no histogram sample on
    the metrics side. A non-finite step count leaves the attribute out instead of failing the span."""

    def event(content: str, ts: int) -> pb.ServerMessage:
        return pb.ServerMessage(event=pb.Event(type=pb.EventType(name="OutboundDHTQuery"), ts=ts, content=content))

    msgs = [
        runtime(),
        state(T0 + 500),  # a node with a State is fresh, so its metrics are exported
        event('{"queryId": "q1", "totalTimeMs": NaN, "result": "SUCCESS"}', T0 + 1000),
        event('{"queryId": "q2", "totalTimeMs": "Infinity", "result": "SUCCESS"}', T0 + 1100),
        event('{"queryId": "q3", "totalTimeMs": true, "result": "SUCCESS"}', T0 + 1200),
        event('{"queryId": "q4", "totalTimeMs": 40, "totalSteps": NaN, "result": "SUCCESS"}', T0 + 1300),
    ]
    hub, spans = run(receiver, msgs)
    assert [s.attrs["libp2p.dht.query.id"] for s in spans] == ["q4"]
    assert "libp2p.dht.query.steps" not in spans[0].attrs
    body = render(HubCollector(hub))[0].decode()
    assert 'libp2p_exporter_spans_dropped_total{node="n1",reason="bad_event"} 3.0' in body
    assert 'libp2p_exporter_spans_dropped_total{node="n1",reason="error"} 0.0' in body
    assert 'libp2p_dht_query_duration_seconds_count{direction="outbound",node="n1",result="success"} 1.0' in body


def test_metrics_and_spans_agree_on_what_a_query_event_is(receiver: MemoryCollector) -> None:
    """A server that names its query events after its own types (content with queryId and
    totalTimeMs) gets a span and a histogram sample, both inbound as its content says."""
    content = json.dumps({"queryId": "q9", "totalTimeMs": 30, "direction": "INBOUND", "result": "ERROR"})
    msgs = [
        runtime(),
        state(T0 + 500),
        pb.ServerMessage(event=pb.Event(type=pb.EventType(name="EvtDHTQuery"), ts=T0 + 1000, content=content)),
    ]
    hub, spans = run(receiver, msgs)
    assert [(s.attrs["libp2p.dht.query.direction"], s.span.kind) for s in spans] == [
        ("inbound", spans[0].span.SPAN_KIND_SERVER)
    ]
    body = render(HubCollector(hub))[0].decode()
    assert 'libp2p_dht_query_duration_seconds_count{direction="inbound",node="n1",result="error"} 1.0' in body


def test_multiaddr_parsing() -> None:
    a = parse("/ip4/1.2.3.4/udp/4001/quic-v1/p2p/12D3KooWX")
    assert (a.host, a.port, a.network_type, a.transport, a.peer_id) == ("1.2.3.4", 4001, "ipv4", "quic", "12D3KooWX")
    a = parse("/dns6/example.org/tcp/443/wss")
    assert (a.host, a.port, a.network_type, a.transport) == ("example.org", 443, "ipv6", "tcp")
    a = parse("/ip4/5.6.7.8/tcp/4001/p2p/R/p2p-circuit/p2p/F")
    assert (a.host, a.port, a.relayed, a.peer_id) == ("5.6.7.8", 4001, True, "F")
    assert parse("/unix/tmp/sock").host == "/tmp/sock"
    assert not parse("8de3166db28fddb199f05be0acea65772e7a1b28").parsed  # the mock's bare peer ids
    assert parse("/ip4/1.2.3.4/tcp/99999").port is None


def test_sampling_is_deterministic_and_urls() -> None:
    keys = [f"k{i}".encode() for i in range(2000)]
    kept = [k for k in keys if keep(k, 0.25)]
    assert 350 < len(kept) < 650
    assert kept == [k for k in keys if keep(k, 0.25)]
    assert http_traces_url("http://h:4318") == "http://h:4318/v1/traces"
    assert http_traces_url("http://h:4318/") == "http://h:4318/v1/traces"
    assert http_traces_url("http://h/custom/traces") == "http://h/custom/traces"


def test_tracing_is_off_unless_an_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.app.cli import build_parser
    from exporter.app.flags import settings_from_args
    from exporter.settings import Tracing
    from exporter.sinks.otel.config import resolve

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    parser = build_parser()
    requested = settings_from_args(parser.parse_args(["replay", "x.mock"])).tracing
    assert resolve(requested) is None
    hub = build_hub()
    handle = install_tracing(hub, requested)
    assert not handle.enabled and not hub.has_mapper("tracing")
    handle.shutdown()

    argv = ["demo", "--otlp.endpoint", "http://c:4317", "--otlp.protocol", "grpc"]
    cfg = resolve(settings_from_args(parser.parse_args(argv)).tracing)
    assert cfg is not None and (cfg.endpoint, cfg.protocol) == ("http://c:4317", "grpc")

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    cfg = resolve(Tracing())
    assert cfg is not None and cfg.endpoint is None and cfg.protocol == "grpc"  # the SDK reads the endpoint
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert resolve(Tracing()) is None
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--tracing.sample.streams", "1.5"])


def test_removed_node_ends_its_open_spans(receiver: MemoryCollector) -> None:
    """A node dropped from the hub (an idle /probe session) releases its spans at once, not at shutdown."""
    hub = build_hub()
    handle: TracingHandle = install_tracing(hub, cfg=TracingConfig(), send=receiver)
    a = conn(b"A", PEER_A, "/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/2")
    for msg in (runtime(), state(T0 + 1000, a)):
        hub.ingest("probe-node", msg)
    assert handle.sink.tracers
    hub.remove("probe-node")
    assert "probe-node" not in handle.sink.tracers
    handle.shutdown(timeout_s=20)
    spans = receiver.spans()
    assert len(spans) == 1
    assert spans[0].span.end_time_unix_nano == (T0 + 1000) * MS
    assert spans[0].attrs["libp2p.span.end_reason"] == "node_removed"


def test_a_dht_key_that_is_not_a_peer_id_is_its_own_attribute(receiver: MemoryCollector) -> None:
    """The py-libp2p provider puts a record name or content hash under ``key``, never ``targetPeerId``."""
    content = json.dumps({"queryId": "q7", "totalTimeMs": 12, "key": "demo-14dd2f48", "result": "SUCCESS"})
    msgs = [
        runtime(),
        pb.ServerMessage(event=pb.Event(type=pb.EventType(name="InboundDHTQuery"), ts=T0 + 1000, content=content)),
    ]
    _, spans = run(receiver, msgs)
    assert len(spans) == 1
    assert spans[0].attrs["libp2p.dht.query.key"] == "demo-14dd2f48"
    assert "libp2p.dht.query.target" not in spans[0].attrs


def test_the_governor_s_span_share_samples_down_and_counts(receiver: MemoryCollector) -> None:
    """The hub's span share (lowered by the ingest governor when behind) multiplies the sampling ratio:
    the spans it leaves out are counted as sampled out, the rest exported."""
    hub = build_hub()
    handle: TracingHandle = install_tracing(hub, cfg=TracingConfig(), send=receiver)
    assert hub.span_share.users == 1
    hub.span_share.value = 0.25
    ids = [b"c%03d" % i for i in range(200)]
    conns = [conn(cid, PEER_A, "/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/2", close_ts=T0 + 500) for cid in ids]
    for msg in (runtime(), state(T0 + 1000, *conns)):
        hub.ingest("n1", msg)
    handle.shutdown(timeout_s=20)
    kept = {i for i in ids if keep(i, 0.25)}
    spans = receiver.spans()
    assert len(spans) == len(kept) and 20 < len(kept) < 90
    from tests.support.samples import hub_series, value

    sampled_out = value(hub_series(hub), "libp2p_exporter_spans_sampled_out_total", node="n1", kind="connection")
    assert sampled_out == len(ids) - len(kept)
