"""The exporter's settings as typed, frozen values, and the one place each default is stated.

Flags (``app/flags.py``), the environment and live mode's config file (``app/config.py``) all produce
these; sinks, sources and the hub take them, never the argparse namespace. A field's default here is
the default everywhere: flag help texts, the config file's fallbacks and the library's own keyword
defaults read it from an instance of its class (``Limits().protocol_cap``), never restate it.

This module imports nothing above the protocol layer (``tests/unit/test_layers.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from exporter.protocol.framing import DEFAULT_MAX_SEGMENT

# --log.level names and what they mean to the logging module.
LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
OTLP_PROTOCOLS = ("http/protobuf", "grpc")


@dataclass(frozen=True)
class Serving:
    """Where and how /metrics is served, and the log."""

    # The exporter range of the Prometheus default port allocations (9100-9999) is fully allocated; see docs.
    listen: str = "127.0.0.1:9797"
    telemetry_path: str = "/metrics"
    log_level: str = "info"
    log_format: str = "logfmt"
    web_config_file: str | None = None  # exporter-toolkit's --web.config.file


@dataclass(frozen=True)
class NativeHistograms:
    """``--histograms.native*``: native (exponential) buckets beside the classic ones for the six
    histogram families, exposed in the protobuf format (``model/native.py``). Not for backfill."""

    enabled: bool = False
    schema: int = 3  # 2**3 buckets per power of two: each 9 % wide, a quantile within 4.5 %
    max_buckets: int = 160  # populated buckets per series; past it the series halves its resolution
    classic: bool = False  # protobuf carries the classic buckets too
    zero_threshold: float = 2.0**-128  # Prometheus' clients' default: only exact zeros, in practice


@dataclass(frozen=True)
class Limits:
    """What one node may cost: label values, series, segment size; and the histogram layout."""

    # Label values beyond the allow-lists: protocol ids, and security, muxer and event type names.
    protocol_cap: int = 32
    other_cap: int = 8
    # Peerstore agents: distinct (implementation, major.minor) pairs beyond which the version is `other`.
    agent_version_cap: int = 64
    # Series one node may cost per metric family and in total; past them label combinations fold
    # into 'other' (labels multiply: caps on each label alone do not bound their combinations).
    series_per_family: int = 2000
    series_per_node: int = 20000
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT
    histograms_profile: str = "default"  # model/histogram_profiles.py: default or lean
    native_histograms: NativeHistograms = field(default_factory=NativeHistograms)


@dataclass(frozen=True)
class Tracing:
    """OpenTelemetry spans as asked for (``--otlp.*``, ``--tracing.*``); ``sinks/otel/config.py``
    resolves what is left unset from the standard OTEL_* environment."""

    endpoint: str | None = None  # None: the SDK reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT itself
    protocol: str | None = None  # None: OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, else http/protobuf
    timeout_s: float | None = None  # None: OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, else 10 s
    service_name: str | None = None  # None: OTEL_SERVICE_NAME, else derived from the implementation
    sample_connections: float = 1.0
    sample_streams: float = 1.0
    sample_dht: float = 1.0
    sample_pubsub: float = 1.0  # pubsub messages traced as spans, by message id
    max_open_spans: int = 10_000  # per node
    shutdown_timeout_s: float = 5.0


@dataclass(frozen=True)
class Pubsub:
    """go-libp2p-pubsub event traces: the collector, trace files, and how the mapper bounds its labels."""

    listen: str | None = None  # a multiaddr for the remote-tracer collector; None: no collector
    identity_seed: bytes | None = None  # 32 bytes: the collector keeps its peer id across restarts
    files: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()  # always kept as label values
    topic_cap: int = 32  # further topics that may become label values (first come); beyond them: other
    window_s: float = 120.0  # how long a message is followed for propagation
    max_messages: int = 50_000  # messages followed at once

    @property
    def wanted(self) -> bool:
        """Whether any trace source is asked for (without one nothing pubsub is added)."""
        return bool(self.listen or self.files)


@dataclass(frozen=True)
class Recording:
    """Live mode's ``--record``: the directory and when a file rotates."""

    dir: str | None = None
    max_bytes: int = 64 << 20
    max_age_s: float = 3600.0


@dataclass(frozen=True)
class Probe:
    """Live mode's /probe: off unless asked for; which targets it may dial; idle sessions."""

    enabled: bool = False
    allow: tuple[str, ...] = ()  # regular expressions a probe target must fully match
    idle_s: float = 300.0
    max_sessions: int = 1000


@dataclass(frozen=True)
class Ingest:
    """Live mode's overload behaviour (``--ingest.*``): the ingest governor, docs/live.md#overload."""

    adaptive: bool = True  # False: always ask for --interval; overload is met by shedding alone
    budget: float = 0.8  # share of one core the sessions' loop may use before nodes get fewer States
    max_interval_s: float | None = None  # the longest interval ever asked; None: each node's retention / 4
    retention_margin: float = 4.0  # the asked interval stays at or below a node's retention / this


@dataclass(frozen=True)
class Settings:
    """What every serving command shares (replay, demo, live): the flags of ``app/flags.py``."""

    serving: Serving = field(default_factory=Serving)
    limits: Limits = field(default_factory=Limits)
    tracing: Tracing = field(default_factory=Tracing)
    pubsub: Pubsub = field(default_factory=Pubsub)
