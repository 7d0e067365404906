"""Turning tracing on for a hub: the span listener and its self-metrics mapper, wired together."""

from __future__ import annotations

import logging

from exporter.pipeline.hub import Hub
from exporter.settings import Tracing
from exporter.sinks.otel.config import TracingConfig, env, resolve
from exporter.sinks.otel.metrics import SpanStatsBook, TracingMetrics
from exporter.sinks.otel.sdk import SpanExporterFactory
from exporter.sinks.otel.sink import OtelSink, TracingHandle

log = logging.getLogger(__name__)


def install_tracing(
    hub: Hub,
    requested: Tracing | None = None,
    cfg: TracingConfig | None = None,
    *,
    span_exporter: SpanExporterFactory | None = None,
) -> TracingHandle:
    """Turn tracing on for ``hub`` when the settings or the environment name an OTLP endpoint.

    ``requested`` is completed from the OTEL_* environment (``config.resolve``); ``cfg``, when given,
    is used as it is.

    Adds the span listener and the ``tracing`` self-metrics mapper through the hub's public API.
    ``span_exporter`` replaces the OTLP exporters (one per node; tests pass in-memory ones). Call
    ``shutdown()`` on the result when the source stops (it is a no-op when tracing is off).
    """
    if cfg is None:
        cfg = resolve(requested or Tracing())
    if cfg is None:
        return TracingHandle()
    try:
        import opentelemetry.sdk.trace  # noqa: F401  (the optional extra; its absence is a user error)
    except ImportError as exc:
        raise SystemExit(
            f"libp2p-exporter: tracing needs the OpenTelemetry packages: pip install 'libp2p-exporter[otel]' ({exc})"
        ) from exc
    if hub.has_mapper(TracingMetrics.name):
        raise ValueError("tracing is already installed on this hub")
    book = SpanStatsBook()
    hub.add_mapper(TracingMetrics(hub.cardinality, book))
    if not log.isEnabledFor(logging.DEBUG):
        # The SDK logs every failed batch; CountingExporter logs the start and end of an outage instead.
        for name in ("opentelemetry.exporter.otlp", "opentelemetry.sdk._shared_internal"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    sink = OtelSink(cfg, book, span_exporter)
    hub.add_listener(sink)
    if span_exporter is None:
        where = cfg.endpoint or env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        log.info("tracing on: OTLP %s to %s", cfg.protocol, where)
    return TracingHandle(sink)
