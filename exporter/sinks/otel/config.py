"""Tracing configuration: the requested ``settings.Tracing`` completed from the standard OTEL_* environment.

Tracing is on when an OTLP endpoint is given by a flag or by the environment; options left unset
fall to the OpenTelemetry SDK's own OTEL_* variables. The flags are declared in ``app/flags.py``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from urllib.parse import urlparse

from exporter.settings import OTLP_PROTOCOLS, Tracing

log = logging.getLogger(__name__)

PROTOCOLS = OTLP_PROTOCOLS
# What the span sink runs with: the requested settings, the protocol resolved.
TracingConfig = Tracing


def env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def resolve(requested: Tracing) -> TracingConfig | None:
    """The tracing config, or None when tracing is off (no endpoint anywhere, or OTEL_SDK_DISABLED)."""
    if not requested.endpoint and not env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    if (env("OTEL_SDK_DISABLED") or "").lower() == "true":
        log.info("OTEL_SDK_DISABLED=true: tracing stays off")
        return None
    protocol = (
        requested.protocol
        or env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        or OTLP_PROTOCOLS[0]
    )
    if protocol not in OTLP_PROTOCOLS:
        raise SystemExit(f"libp2p-exporter: unsupported OTLP protocol {protocol!r} (use {' or '.join(OTLP_PROTOCOLS)})")
    return replace(
        requested,
        protocol=protocol,
        service_name=requested.service_name or env("OTEL_SERVICE_NAME"),
    )


def http_traces_url(endpoint: str) -> str:
    """A base URL gets the OTLP/HTTP traces path; a URL that has a path is used as given."""
    if urlparse(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint
