"""Tracing configuration: the ``--otlp.*`` / ``--tracing.*`` flags and the standard OTEL_* environment.

Tracing is on when an OTLP endpoint is given by a flag or by the environment; options left unset
fall to the OpenTelemetry SDK's own OTEL_* variables.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from urllib.parse import urlparse

log = logging.getLogger(__name__)

PROTOCOLS = ("http/protobuf", "grpc")


@dataclass
class TracingConfig:
    """What ``--otlp.*`` / ``--tracing.*`` and the OTEL_* environment asked for."""

    endpoint: str | None = None  # None: the SDK reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT itself
    protocol: str = "http/protobuf"
    timeout_s: float | None = None  # None: OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, else 10 s
    service_name: str | None = None  # None: OTEL_SERVICE_NAME, else derived from the implementation
    sample_connections: float = 1.0
    sample_streams: float = 1.0
    sample_dht: float = 1.0
    max_open_spans: int = 10_000  # per node
    shutdown_timeout_s: float = 5.0


def env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"sampling ratio must be within 0..1, got {text}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def add_otel_flags(p: argparse.ArgumentParser) -> None:
    """Tracing flags; tracing is on when an endpoint is given here or in the standard environment."""
    g = p.add_argument_group("tracing (OpenTelemetry, off unless an OTLP endpoint is set)")
    g.add_argument(
        "--otlp.endpoint",
        dest="otlp_endpoint",
        metavar="URL",
        default=None,
        help="OTLP collector URL, e.g. http://127.0.0.1:4318 (HTTP; /v1/traces is added when the URL has "
        "no path) or http://127.0.0.1:4317 (gRPC). Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / "
        "OTEL_EXPORTER_OTLP_ENDPOINT; tracing is off when none is set",
    )
    g.add_argument(
        "--otlp.protocol",
        dest="otlp_protocol",
        choices=PROTOCOLS,
        default=None,
        help="http/protobuf (default) or grpc; default from OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL",
    )
    g.add_argument(
        "--otlp.timeout",
        dest="otlp_timeout",
        metavar="SECONDS",
        type=_positive,
        default=None,
        help="seconds per export request (default: OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, else 10)",
    )
    g.add_argument(
        "--tracing.service-name",
        dest="tracing_service_name",
        metavar="NAME",
        default=None,
        help="service.name of each node's resource (default: OTEL_SERVICE_NAME, else the node's implementation)",
    )
    g.add_argument(
        "--tracing.sample.connections",
        dest="tracing_sample_connections",
        metavar="RATIO",
        type=_ratio,
        default=1.0,
        help="share of connection spans kept, 0..1 (default 1)",
    )
    g.add_argument(
        "--tracing.sample.streams",
        dest="tracing_sample_streams",
        metavar="RATIO",
        type=_ratio,
        default=1.0,
        help="share of stream spans kept among kept connections, 0..1 (default 1)",
    )
    g.add_argument(
        "--tracing.sample.dht",
        dest="tracing_sample_dht",
        metavar="RATIO",
        type=_ratio,
        default=1.0,
        help="share of DHT query spans kept, 0..1 (default 1)",
    )
    g.add_argument(
        "--tracing.max-open-spans",
        dest="tracing_max_open_spans",
        metavar="N",
        type=_count,
        default=10_000,
        help="connection + stream spans held open per node; past it new ones are dropped and counted (default 10000)",
    )


def config_from_args(args: argparse.Namespace) -> TracingConfig | None:
    """The tracing config, or None when tracing is off (no endpoint anywhere, or OTEL_SDK_DISABLED)."""
    endpoint = getattr(args, "otlp_endpoint", None)
    if not endpoint and not env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    if (env("OTEL_SDK_DISABLED") or "").lower() == "true":
        log.info("OTEL_SDK_DISABLED=true: tracing stays off")
        return None
    protocol = (
        getattr(args, "otlp_protocol", None)
        or env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in PROTOCOLS:
        raise SystemExit(f"libp2p-exporter: unsupported OTLP protocol {protocol!r} (use {' or '.join(PROTOCOLS)})")
    return TracingConfig(
        endpoint=endpoint or None,
        protocol=protocol,
        timeout_s=getattr(args, "otlp_timeout", None),
        service_name=getattr(args, "tracing_service_name", None) or env("OTEL_SERVICE_NAME"),
        sample_connections=getattr(args, "tracing_sample_connections", 1.0),
        sample_streams=getattr(args, "tracing_sample_streams", 1.0),
        sample_dht=getattr(args, "tracing_sample_dht", 1.0),
        max_open_spans=max(0, getattr(args, "tracing_max_open_spans", 10_000)),
    )


def http_traces_url(endpoint: str) -> str:
    """A base URL gets the OTLP/HTTP traces path; a URL that has a path is used as given."""
    if urlparse(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint
