"""Spans as the exporter builds them, and their OTLP protobuf, filled directly.

The exporter knows every span's whole life before it ends it (start and end come from the node's
own timestamps, sampling is decided before a span exists), so it needs none of an SDK's machinery:
no context propagation, sampler, span processors or attribute validation per call. A ``Span`` is
a small record; ``encode_request`` turns ended spans into the ``ExportTraceServiceRequest`` a
collector receives. Measured in bench/span_cost.py against the SDK path it replaced.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

# OTLP's own enum values (trace.proto), not an API's
KIND_SERVER: int = trace_pb2.Span.SPAN_KIND_SERVER
KIND_CLIENT: int = trace_pb2.Span.SPAN_KIND_CLIENT
KIND_PRODUCER: int = trace_pb2.Span.SPAN_KIND_PRODUCER
KIND_CONSUMER: int = trace_pb2.Span.SPAN_KIND_CONSUMER
STATUS_UNSET: int = trace_pb2.Status.STATUS_CODE_UNSET
STATUS_OK: int = trace_pb2.Status.STATUS_CODE_OK
STATUS_ERROR: int = trace_pb2.Status.STATUS_CODE_ERROR

# Span flags: bit 8 says whether the parent is remote is known, bit 9 that it is. The low byte (W3C trace
# flags) stays 0, as the SDK leaves it.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200

_rand = random.Random()


def new_trace_id() -> int:
    return _rand.getrandbits(128) or 1


def new_span_id() -> int:
    return _rand.getrandbits(64) or 1


class Span:
    """One span being built: ended once, then handed to ``on_end`` (the export queue)."""

    __slots__ = (
        "_on_end",
        "attributes",
        "end_ns",
        "events",
        "kind",
        "links",
        "name",
        "parent_id",
        "remote_parent",
        "span_id",
        "start_ns",
        "status",
        "status_message",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        kind: int,
        start_ns: int,
        attributes: dict[str, Any],
        on_end: Callable[[Span], None],
        *,
        trace_id: int = 0,
        span_id: int = 0,
        parent_id: int = 0,
        remote_parent: bool = False,
        links: list[tuple[int, int, dict[str, Any]]] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_id or new_trace_id()
        self.span_id = span_id or new_span_id()
        self.parent_id = parent_id
        self.remote_parent = remote_parent
        self.start_ns = start_ns
        self.end_ns = 0
        self.attributes = attributes
        self.events: list[tuple[str, int]] = []
        self.links = links
        self.status = STATUS_UNSET
        self.status_message = ""
        self._on_end: Callable[[Span], None] | None = on_end

    def child(self, name: str, kind: int, start_ns: int, attributes: dict[str, Any]) -> Span:
        """A span in this span's trace with this span as its parent."""
        assert self._on_end is not None, "a child of an ended span"
        return Span(name, kind, start_ns, attributes, self._on_end, trace_id=self.trace_id, parent_id=self.span_id)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.attributes.update(attributes)

    def add_event(self, name: str, timestamp_ns: int) -> None:
        self.events.append((name, timestamp_ns))

    def set_status(self, code: int, message: str = "") -> None:
        self.status = code
        self.status_message = message if code == STATUS_ERROR else ""  # OTLP: a message only with ERROR

    def end(self, end_ns: int) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is None:  # ended twice: the first end stands
            return
        self.end_ns = end_ns
        on_end(self)


def any_value(value: Any) -> common_pb2.AnyValue:
    # bool before int: a bool is an int in Python
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, str):
        return common_pb2.AnyValue(string_value=value)
    if isinstance(value, (list, tuple)):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[any_value(v) for v in value]))
    return common_pb2.AnyValue(string_value=str(value))


def key_values(attributes: Mapping[str, Any]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def encode_span(span: Span) -> trace_pb2.Span:
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if span.remote_parent else 0)
    out = trace_pb2.Span(
        trace_id=span.trace_id.to_bytes(16, "big"),
        span_id=span.span_id.to_bytes(8, "big"),
        name=span.name,
        kind=span.kind,  # type: ignore[arg-type]
        start_time_unix_nano=span.start_ns,
        end_time_unix_nano=span.end_ns,
        attributes=key_values(span.attributes),
        flags=flags,
    )
    if span.parent_id:
        out.parent_span_id = span.parent_id.to_bytes(8, "big")
    if span.events:
        out.events.extend(trace_pb2.Span.Event(name=n, time_unix_nano=t) for n, t in span.events)
    if span.links:
        out.links.extend(
            trace_pb2.Span.Link(
                trace_id=tid.to_bytes(16, "big"),
                span_id=sid.to_bytes(8, "big"),
                attributes=key_values(attrs),
                flags=_HAS_IS_REMOTE,
            )
            for tid, sid, attrs in span.links
        )
    if span.status != STATUS_UNSET:
        out.status.code = span.status  # type: ignore[assignment]  # an int where the stubs want the enum
        if span.status_message:
            out.status.message = span.status_message
    return out


class Resource:
    """A resource and an instrumentation scope, encoded once; spans are grouped under them."""

    __slots__ = ("_encoded", "attributes", "scope", "version")

    def __init__(self, attributes: Mapping[str, Any], scope: str, version: str) -> None:
        self.attributes = dict(attributes)
        self.scope = scope
        self.version = version
        self._encoded: bytes | None = None

    def fill(self, rs: trace_pb2.ResourceSpans) -> trace_pb2.ScopeSpans:
        if self._encoded is None:
            rs.resource.attributes.extend(key_values(self.attributes))
            self._encoded = rs.resource.SerializeToString()
        else:
            rs.resource.MergeFromString(self._encoded)
        scope = rs.scope_spans.add()
        scope.scope.name = self.scope
        scope.scope.version = self.version
        return scope


def encode_request(groups: Iterable[tuple[Resource, Sequence[Span]]]) -> ts.ExportTraceServiceRequest:
    """One request: a ResourceSpans per resource, its spans under one scope."""
    req = ts.ExportTraceServiceRequest()
    for resource, spans in groups:
        scope = resource.fill(req.resource_spans.add())
        scope.spans.extend(encode_span(s) for s in spans)
    return req
