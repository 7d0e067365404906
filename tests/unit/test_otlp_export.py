"""The direct OTLP path: spans encoded without the SDK (checked against the SDK's own encoding), the
bounded export queue, and the HTTP and gRPC transports against real receivers on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from exporter.sinks.otel.config import TracingConfig
from exporter.sinks.otel.export import Channel, SpanQueue, Transport, make_sender, parse_headers, resource_for
from exporter.sinks.otel.metrics import SpanStats
from exporter.sinks.otel.otlp import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_OK,
    Span,
    encode_request,
)
from tests.support.otlp import GrpcReceiver, HttpReceiver, MemoryCollector, attributes

T0 = 1_700_000_000_000_000_000
CONN_ATTRS: dict[str, Any] = {
    "libp2p.connection.id": "0a0b",
    "libp2p.relayed": False,
    "network.peer.port": 4001,
    "libp2p.connection.latency_ms": 1.5,
    "libp2p.dht.query.peers": ["a", "b"],
}


class _Ids(IdGenerator):
    def __init__(self, ids: list[tuple[int, int]]) -> None:
        self.ids = ids

    def generate_trace_id(self) -> int:
        return self.ids[0][0]

    def generate_span_id(self) -> int:
        return self.ids.pop(0)[1]


def _span_dict(span: Any) -> dict[str, Any]:
    """What a collector reads of one OTLP span."""
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "attrs": attributes(span.attributes),
        "events": [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events],
        "links": [(lk.trace_id, lk.span_id, attributes(lk.attributes), lk.flags) for lk in span.links],
        "status": (span.status.code, span.status.message),
        "flags": span.flags,
    }


def test_direct_spans_encode_as_the_sdk_encodes_them() -> None:
    # the SDK: a connection (client, linked, error, an event), its stream, a remote-parented consumer span
    memory = InMemorySpanExporter()
    ids = [(0xA1, 0xB1), (0xA1, 0xB2), (0xA1, 0xB3)]
    provider = TracerProvider(resource=SdkResource.create({"service.name": "n"}), id_generator=_Ids(ids))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("libp2p-exporter", "1")
    relay = SpanContext(0xF1, 0xF2, False, TraceFlags(TraceFlags.SAMPLED))
    conn = tracer.start_span(
        "libp2p.connection",
        kind=SpanKind.CLIENT,
        attributes=CONN_ATTRS,
        links=[Link(relay, {"libp2p.link.type": "relayed_over"})],
        start_time=T0,
    )
    conn.add_event("libp2p.connection.upgraded", timestamp=T0 + 5)
    conn.set_status(Status(StatusCode.ERROR, "connection ended in ERROR"))
    stream = tracer.start_span(
        "libp2p.stream", context=set_span_in_context(conn), kind=SpanKind.SERVER, attributes={"p": "/x"}, start_time=T0
    )
    stream.set_status(Status(StatusCode.OK))
    stream.end(end_time=T0 + 7)
    conn.end(end_time=T0 + 9)
    parent = SpanContext(0xA1, 0xC1, True, TraceFlags(TraceFlags.SAMPLED))
    consumer = tracer.start_span(
        "pubsub.deliver", context=set_span_in_context(NonRecordingSpan(parent)), kind=SpanKind.CONSUMER, start_time=T0
    )
    consumer.end(end_time=T0 + 3)
    sdk = encode_spans(memory.get_finished_spans())

    # ours, the same spans
    ended: list[Span] = []
    mine = Span(
        "libp2p.connection",
        KIND_CLIENT,
        T0,
        dict(CONN_ATTRS),
        ended.append,
        trace_id=0xA1,
        span_id=0xB1,
        links=[(0xF1, 0xF2, {"libp2p.link.type": "relayed_over"})],
    )
    mine.add_event("libp2p.connection.upgraded", T0 + 5)
    mine.set_status(STATUS_ERROR, "connection ended in ERROR")
    child = mine.child("libp2p.stream", KIND_SERVER, T0, {"p": "/x"})
    child.span_id = 0xB2
    child.set_status(STATUS_OK)
    child.end(T0 + 7)
    mine.end(T0 + 9)
    mine.end(T0 + 99)  # a second end changes nothing and queues nothing
    deliver = Span(
        "pubsub.deliver",
        KIND_CONSUMER,
        T0,
        {},
        ended.append,
        trace_id=0xA1,
        span_id=0xB3,
        parent_id=0xC1,
        remote_parent=True,
    )
    deliver.end(T0 + 3)
    assert len(ended) == 3
    resource = resource_for({"service.name": "n"}, "libp2p-exporter", "1")
    ours = encode_request([(resource, ended)])

    sdk_spans = [_span_dict(s) for s in sdk.resource_spans[0].scope_spans[0].spans]
    our_spans = [_span_dict(s) for s in ours.resource_spans[0].scope_spans[0].spans]
    assert our_spans == sdk_spans
    scope = ours.resource_spans[0].scope_spans[0].scope
    assert (scope.name, scope.version) == ("libp2p-exporter", "1")
    # the resource: ours says what the exporter knows; the SDK adds its own telemetry.sdk.* names and a
    # random service.instance.id when none is given (the exporter always gives one: the node's peer id)
    sdk_resource = attributes(sdk.resource_spans[0].resource.attributes)
    our_resource = attributes(ours.resource_spans[0].resource.attributes)
    sdk_own = {k for k in sdk_resource if k.startswith("telemetry.sdk.")} | {"service.instance.id"}
    assert our_resource == {k: v for k, v in sdk_resource.items() if k not in sdk_own}


def test_resource_attributes_from_the_environment_yield_to_the_exporter_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=env%20name,bad")
    res = resource_for({"service.name": "node-a"}, "s", "1")
    assert res.attributes == {"deployment.environment": "prod", "service.name": "node-a"}


def _channel(name: str, stats: SpanStats | None = None) -> Channel:
    return Channel(name, resource_for({"service.name": name}, "libp2p-exporter", "1"), stats or SpanStats(), None)


def _put(queue: SpanQueue, ch: Channel, n: int) -> None:
    for i in range(n):
        Span("s", KIND_CLIENT, T0 + i, {}, lambda s: queue.put(ch, s)).end(T0 + i + 1)


def test_a_stuck_collector_fills_each_node_s_share_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "20")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5")
    gate = threading.Event()
    bodies: list[bytes] = []

    def stuck(body: bytes) -> bool:  # the first request hangs until released
        gate.wait(10)
        bodies.append(body)
        return True

    queue = SpanQueue(TracingConfig(), stuck)
    noisy, quiet = _channel("noisy"), _channel("quiet")
    _put(queue, noisy, 100)
    _put(queue, quiet, 3)
    # the noisy node lost what did not fit its own share; the quiet node lost nothing
    assert noisy.stats.dropped["queue_full"] == 100 - 20
    assert quiet.stats.dropped["queue_full"] == 0 and quiet.stats.queued == 3
    gate.set()
    assert queue.flush(10)
    assert noisy.stats.exported == 20 and quiet.stats.exported == 3
    assert noisy.stats.queued == quiet.stats.queued == 0
    assert queue.shutdown(5)
    _put(queue, quiet, 1)  # after shutdown: counted, not kept
    assert quiet.stats.dropped["queue_full"] == 1


def test_one_request_groups_spans_under_each_node_s_resource() -> None:
    collector = MemoryCollector()
    queue = SpanQueue(TracingConfig(), collector)
    a, b = _channel("a"), _channel("b")
    _put(queue, a, 2)
    _put(queue, b, 1)
    _put(queue, a, 1)
    assert queue.flush(10) and queue.shutdown(5)
    assert collector.calls == 1
    req = collector.requests[0]
    per_resource = {
        attributes(rs.resource.attributes)["service.name"]: len(rs.scope_spans[0].spans) for rs in req.resource_spans
    }
    assert per_resource == {"a": 3, "b": 1}
    assert a.stats.batches["success"] == 1 and a.stats.exported == 3


def test_a_refused_batch_is_counted_failed_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.sinks.otel.export")
    collector = MemoryCollector()
    collector.fail = True
    queue = SpanQueue(TracingConfig(), collector)
    ch = _channel("n")
    for _ in range(3):
        _put(queue, ch, 2)
        assert queue.flush(10)
    collector.fail = False
    _put(queue, ch, 1)
    assert queue.flush(10) and queue.shutdown(5)
    assert ch.stats.export_failed == 6 and ch.stats.batches["failure"] == 3 and ch.stats.exported == 1
    warnings = [r for r in caplog.records if "export failing" in r.getMessage()]
    assert len(warnings) == 1
    assert any("recovered after 3 failed batch" in r.getMessage() for r in caplog.records)


def test_http_headers_gzip_and_a_retried_503(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "API-Key=s%3Dcret, x-team = p2p,broken")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    http_receiver.fail_next = 1  # the first answer is 503: retried within the timeout
    stop = threading.Event()
    send = make_sender(TracingConfig(endpoint=http_receiver.endpoint, protocol="http/protobuf", timeout_s=10), stop)
    body = encode_request([(resource_for({"service.name": "n"}, "s", "1"), [_ended()])]).SerializeToString()
    assert send(body)
    assert http_receiver.calls == 2 and len(http_receiver.spans()) == 1
    h = http_receiver.headers[-1]
    assert h["api-key"] == "s=cret" and h["x-team"] == "p2p"
    assert h["content-encoding"] == "gzip" and h["content-type"] == "application/x-protobuf"


def test_http_a_400_is_not_retried(http_receiver: HttpReceiver) -> None:
    http_receiver.fail_next, http_receiver.fail_status = 5, 400
    send = make_sender(
        TracingConfig(endpoint=http_receiver.endpoint, protocol="http/protobuf", timeout_s=10), threading.Event()
    )
    assert not send(b"")
    assert http_receiver.calls == 1


def test_grpc_metadata_and_a_retried_unavailable(grpc_receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20x")
    grpc_receiver.fail_next = 1
    send = make_sender(TracingConfig(endpoint=grpc_receiver.endpoint, protocol="grpc", timeout_s=10), threading.Event())
    body = encode_request([(resource_for({"service.name": "n"}, "s", "1"), [_ended()])]).SerializeToString()
    assert send(body)
    assert grpc_receiver.calls == 2 and len(grpc_receiver.spans()) == 1
    assert grpc_receiver.headers[-1]["authorization"] == "Bearer x"


def _ended() -> Span:
    out: list[Span] = []
    Span("libp2p.connection", KIND_CLIENT, T0, {"k": 1}, out.append).end(T0 + 1)
    return out[0]


def test_transport_reads_the_standard_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    http = TracingConfig(protocol="http/protobuf")
    assert Transport.of(http).endpoint == "http://localhost:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")
    assert Transport.of(http).endpoint == "http://c:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom")  # signal-specific: as given
    assert Transport.of(http).endpoint == "http://c:4318/custom"
    assert (
        Transport.of(TracingConfig(endpoint="http://flag:1", protocol="http/protobuf")).endpoint
        == "http://flag:1/v1/traces"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2.5")
    assert Transport.of(http).timeout_s == 2.5
    assert Transport.of(TracingConfig(protocol="grpc", endpoint="http://c:4317")).insecure
    assert not Transport.of(TracingConfig(protocol="grpc", endpoint="https://c:4317")).insecure
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    assert Transport.of(TracingConfig(protocol="grpc", endpoint="c:4317")).insecure
    assert parse_headers("a=1,,b=x%2Cy") == {"a": "1", "b": "x,y"}


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "unsupported OTLP compression 'zstd'"),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nonexistent/ca.pem",
            "cannot read the OTLP certificate '/nonexistent/ca.pem'",
        ),
    ],
)
def test_a_bad_transport_variable_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit) as exc:
        Transport.of(TracingConfig(protocol="http/protobuf"))
    text = str(exc.value)
    assert message in text and "\n" not in text
