"""OpenTelemetry SDK plumbing: one TracerProvider per observed node, batched export, OTLP exporters.

The span exporter is chosen by the caller: OTLP over HTTP/protobuf or gRPC by default, anything
with the SDK's ``SpanExporter`` interface otherwise (tests pass an in-memory one). Export runs in
the SDK's worker thread: a collector that is down or slow costs dropped spans and counted
failures, never a stalled pipeline or missing metrics. The SDK is the optional extra ``otel``,
so it is imported where it is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from exporter import __version__
from exporter.pipeline.node import NodeState
from exporter.sinks.otel.config import TracingConfig, http_traces_url
from exporter.sinks.otel.metrics import CountingExporter, QueueGate, SpanStats

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

# Makes the span exporter of one node (by node name); each provider shuts its own exporter down.
SpanExporterFactory = Callable[[str], Any]


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        log.warning("%s is not an integer; using %d", name, default)
        return default


def make_span_exporter(cfg: TracingConfig) -> Any:
    """The OTLP exporter for ``cfg.protocol``; unset options fall to the standard OTEL_* variables."""
    kwargs: dict[str, Any] = {}
    if cfg.timeout_s is not None:
        kwargs["timeout"] = cfg.timeout_s
    if cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=cfg.endpoint, **kwargs)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=http_traces_url(cfg.endpoint) if cfg.endpoint else None, **kwargs)


def resource_attributes(node: NodeState, cfg: TracingConfig) -> dict[str, Any]:
    """The observed node as an OTel resource: the exporter is only the reporter."""
    rt = node.runtime
    impl = rt.implementation if rt and rt.implementation else "libp2p"
    attrs: dict[str, Any] = {
        "service.name": cfg.service_name or impl,
        "service.instance.id": (rt.peer_id if rt and rt.peer_id else "") or node.name,
        "libp2p.implementation": impl,
        "libp2p.exporter.node": node.name,
        "libp2p.exporter.version": __version__,
    }
    if rt and rt.version:
        attrs["service.version"] = rt.version
        attrs["libp2p.implementation.version"] = rt.version
    if rt and rt.platform:
        attrs["libp2p.platform"] = rt.platform
    if rt and rt.peer_id:
        attrs["libp2p.peer.id.local"] = rt.peer_id
    for key, value in node.labels.items():
        attrs.setdefault(f"libp2p.exporter.label.{key}", value)
    return attrs


def otlp_exporters(cfg: TracingConfig) -> SpanExporterFactory:
    """The default: a fresh OTLP exporter per node, as ``cfg`` and the OTEL_* environment say."""
    return lambda _node: make_span_exporter(cfg)


def node_provider(node: NodeState, cfg: TracingConfig, stats: SpanStats, span_exporter: Any) -> TracerProvider:
    """A provider whose resource is ``node``, exporting through a bounded, counted batch queue."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    provider = TracerProvider(
        resource=Resource.create(resource_attributes(node, cfg)), sampler=ALWAYS_ON, shutdown_on_exit=False
    )
    queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
    # CountingExporter and QueueGate have SpanExporter's and SpanProcessor's methods but cannot subclass
    # them: the SDK is an optional extra, imported where it is used
    counting = CountingExporter(span_exporter, stats, node.name, exported=node.spans)  # exemplars learn of exports
    batch = BatchSpanProcessor(counting, max_queue_size=queue)  # type: ignore[arg-type]
    provider.add_span_processor(QueueGate(batch, stats, queue))  # type: ignore[arg-type]
    return provider
