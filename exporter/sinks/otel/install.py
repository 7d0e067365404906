"""Turning tracing on for a hub: the span listener and its self-metrics mapper, wired together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from exporter.pipeline.hub import Hub
from exporter.settings import Tracing
from exporter.sinks.otel.config import TracingConfig, env, resolve
from exporter.sinks.otel.metrics import SpanStatsBook, TracingMetrics

if TYPE_CHECKING:
    from exporter.sinks.otel.sink import OtelSink

log = logging.getLogger(__name__)


def install_tracing(
    hub: Hub,
    requested: Tracing | None = None,
    cfg: TracingConfig | None = None,
    *,
    send: Callable[[bytes], bool] | None = None,
) -> TracingHandle:
    """Turn tracing on for ``hub`` when the settings or the environment name an OTLP endpoint.

    ``requested`` is completed from the OTEL_* environment (``config.resolve``); ``cfg``, when given,
    is used as it is.

    Adds the span listener and the ``tracing`` self-metrics mapper through the hub's public API.
    ``send`` replaces the OTLP transport (it takes a serialized ExportTraceServiceRequest and says whether
    it was accepted; tests keep the requests in memory). Call
    ``shutdown()`` on the result when the source stops (it is a no-op when tracing is off).
    """
    if cfg is None:
        cfg = resolve(requested or Tracing())
    if cfg is None:
        return TracingHandle()
    try:  # the optional extra: the OTLP types and the protocol's transport; their absence is a user error
        import opentelemetry.proto.trace.v1.trace_pb2  # noqa: F401

        if cfg.protocol == "grpc":
            import grpc  # noqa: F401
        else:
            import requests  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"libp2p-exporter: tracing needs the OpenTelemetry packages: pip install 'libp2p-exporter[otel]' ({exc})"
        ) from exc
    if hub.has_mapper(TracingMetrics.name):
        raise ValueError("tracing is already installed on this hub")
    book = SpanStatsBook()
    hub.add_mapper(TracingMetrics(hub.cardinality, book))
    from exporter.sinks.otel.sink import OtelSink  # needs the extra's packages: imported once they are known there

    sink = OtelSink(cfg, book, send, share=hub.span_share)
    hub.span_share.users += 1  # the ingest governor may now sample spans down before it slows States
    hub.add_listener(sink)
    if send is None:
        where = cfg.endpoint or env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        log.info("tracing on: OTLP %s to %s", cfg.protocol, where)
    return TracingHandle(sink)


class TracingHandle:
    """What ``install_tracing`` returns; a disabled handle does nothing."""

    def __init__(self, sink: OtelSink | None = None) -> None:
        self.sink = sink

    @property
    def enabled(self) -> bool:
        return self.sink is not None

    def flush(self, timeout_s: float = 5.0) -> bool:
        return self.sink.flush(timeout_s) if self.sink else True

    def shutdown(self, timeout_s: float | None = None) -> None:
        if self.sink is not None:
            self.sink.shutdown(timeout_s)
