"""The flags every serving command shares, defined once, and the log setup they drive."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import Any

from exporter.app.argtypes import count, non_negative_int, positive_int, positive_seconds, ratio
from exporter.logs import LEVELS
from exporter.logs import add_format_flag as add_log_format_flag
from exporter.logs import configure as configure_logging
from exporter.model.histogram_profiles import PROFILES
from exporter.model.native import MAX_SCHEMA, MIN_SCHEMA
from exporter.settings import LOG_LEVELS, OTLP_PROTOCOLS, Limits, NativeHistograms, Pubsub, Serving, Settings, Tracing
from exporter.web_config import add_flag as add_web_config_flag


def add_serving_flags(p: argparse.ArgumentParser, *, from_config: bool = False) -> None:
    """``--web.*``, ``--log.*``, ``--labels.*``, ``--protocol.max-segment-bytes``, tracing and pubsub traces.

    Every serving command takes them from here, in the same groups with the same words, so that one
    command's ``--help`` reads like another's; ``settings_from_args`` turns them into ``Settings``.
    ``from_config``: live mode, where the address, path, log level and histogram profile may also come
    from the environment or a config file, so those flags default to None and the merged config
    decides (the help states the same defaults).
    """
    serving = Serving()

    def default(value: str) -> str | None:
        return None if from_config else value

    web = p.add_argument_group("serving (HTTP)")
    web.add_argument(
        "--web.listen-address",
        dest="listen",
        default=default(serving.listen),
        help=f"address to serve metrics on (default {serving.listen})",
    )
    web.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default=default(serving.telemetry_path),
        help=f"metrics path (default {serving.telemetry_path})",
    )
    add_web_config_flag(web)
    logs = p.add_argument_group("logging")
    logs.add_argument(
        "--log.level",
        dest="log_level",
        default=default(serving.log_level),
        choices=list(LOG_LEVELS),
        help=f"log level (default {serving.log_level})",
    )
    add_log_format_flag(logs)
    add_limit_flags(p, histograms_default=default(Limits().histograms_profile))
    add_native_flags(p)
    add_otel_flags(p)
    add_pubsub_flags(p)


def add_limit_flags(p: argparse.ArgumentParser, *, histograms_default: str | None = None) -> None:
    """``--labels.*``, ``--histograms.profile`` and ``--protocol.max-segment-bytes``: what one node may
    cost. Serving commands and backfill (which fills in their history) share them, types included."""
    limits = Limits()
    g = p.add_argument_group("limits (what one node may cost: label values, series, segment size)")
    g.add_argument(
        "--labels.protocol-cap",
        dest="protocol_cap",
        type=non_negative_int,
        default=limits.protocol_cap,
        help="protocol ids beyond the known list that may become label values before the rest is 'other' "
        f"(default {limits.protocol_cap})",
    )
    g.add_argument(
        "--labels.other-cap",
        dest="other_cap",
        type=non_negative_int,
        default=limits.other_cap,
        help=f"the same cap for security, muxer and event type names (default {limits.other_cap})",
    )
    g.add_argument(
        "--labels.series-per-family",
        dest="series_per_family",
        type=positive_int,
        default=limits.series_per_family,
        help="series one node may cost in one metric family; further label combinations fold into "
        f"'other' (default {limits.series_per_family})",
    )
    g.add_argument(
        "--labels.series-per-node",
        dest="series_per_node",
        type=positive_int,
        default=limits.series_per_node,
        help=f"the same budget over all of one node's families (default {limits.series_per_node})",
    )
    add_histograms_flag(g, histograms_default)
    g.add_argument(
        "--protocol.max-segment-bytes",
        dest="max_segment",
        type=positive_int,
        default=limits.max_segment_bytes,
        help="largest segment accepted; longer lengths are errors, never allocations "
        f"(default {limits.max_segment_bytes})",
    )


def add_histograms_flag(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None) -> None:
    """``--histograms.profile``: which buckets and labels the histogram families get
    (``model/histogram_profiles.py``; per-family overrides only in live mode's config file)."""
    p.add_argument(
        "--histograms.profile",
        dest="histograms_profile",
        choices=list(PROFILES),
        default=default,
        help="histogram buckets and labels: default (go-libp2p's layouts, every label) or lean "
        "(fewer bounds and labels, about half the series per node; docs/metrics.md) "
        f"(default {Limits().histograms_profile})",
    )


def _schema(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not MIN_SCHEMA <= value <= MAX_SCHEMA:
        raise argparse.ArgumentTypeError(f"{value} is outside {MIN_SCHEMA}..{MAX_SCHEMA}")
    return value


def add_native_flags(p: argparse.ArgumentParser) -> None:
    """``--histograms.native`` and its settings (``settings.NativeHistograms``; docs/metrics.md#native-histograms).
    Serving commands only: backfill writes OpenMetrics, which has no native histograms."""
    native = NativeHistograms()
    g = p.add_argument_group("native histograms (exposed to scrapers that negotiate protobuf)")
    g.add_argument(
        "--histograms.native",
        dest="histograms_native",
        action="store_true",
        default=native.enabled,
        help="also keep native (exponential) buckets for the six histogram families and expose them to "
        "scrapers that negotiate protobuf (Prometheus with --enable-feature=native-histograms); text and "
        "OpenMetrics keep the profile's classic buckets, whose labels the native series share",
    )
    g.add_argument(
        "--histograms.native-schema",
        dest="histograms_native_schema",
        metavar="N",
        type=_schema,
        default=native.schema,
        help=f"starting resolution: 2^N buckets per power of two, {MIN_SCHEMA}..{MAX_SCHEMA} "
        f"(default {native.schema}: buckets 9%% wide)",
    )
    g.add_argument(
        "--histograms.native-max-buckets",
        dest="histograms_native_max_buckets",
        metavar="N",
        type=positive_int,
        default=native.max_buckets,
        help="populated native buckets per series; past it the series halves its resolution "
        f"(default {native.max_buckets})",
    )
    g.add_argument(
        "--histograms.native-classic",
        dest="histograms_native_classic",
        action="store_true",
        default=native.classic,
        help="in protobuf, send the classic buckets alongside the native ones (Prometheus >= 2.45 can "
        "store both with scrape_classic_histograms; 2.42 keeps the native ones)",
    )


def native_from_args(args: argparse.Namespace) -> NativeHistograms:
    """The ``--histograms.native*`` flags."""
    return NativeHistograms(
        enabled=args.histograms_native,
        schema=args.histograms_native_schema,
        max_buckets=args.histograms_native_max_buckets,
        classic=args.histograms_native_classic,
    )


def add_otel_flags(p: argparse.ArgumentParser) -> None:
    """Tracing flags; tracing is on when an endpoint is given here or in the standard environment."""
    tracing = Tracing()
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
        choices=OTLP_PROTOCOLS,
        default=None,
        help=f"{OTLP_PROTOCOLS[0]} (default) or grpc; default from OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL",
    )
    g.add_argument(
        "--otlp.timeout",
        dest="otlp_timeout",
        metavar="SECONDS",
        type=positive_seconds,
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
    for what, dest, default, text in (
        ("connections", "tracing_sample_connections", tracing.sample_connections, "connection spans kept"),
        ("streams", "tracing_sample_streams", tracing.sample_streams, "stream spans kept among kept connections"),
        ("dht", "tracing_sample_dht", tracing.sample_dht, "DHT query spans kept"),
    ):
        g.add_argument(
            f"--tracing.sample.{what}",
            dest=dest,
            metavar="RATIO",
            type=ratio,
            default=default,
            help=f"share of {text}, 0..1 (default {default:g})",
        )
    g.add_argument(
        "--tracing.max-open-spans",
        dest="tracing_max_open_spans",
        metavar="N",
        type=count,
        default=tracing.max_open_spans,
        help="connection + stream spans held open per node; past it new ones are dropped and counted "
        f"(default {tracing.max_open_spans})",
    )


def add_pubsub_flags(p: argparse.ArgumentParser) -> None:
    """go-libp2p-pubsub event traces (``app/pubsub.py``): off unless a listen address or a file is given."""
    g = p.add_argument_group("pubsub traces (go-libp2p-pubsub event tracer; off unless a listen address or file)")
    g.add_argument(
        "--pubsub.listen",
        dest="pubsub_listen",
        metavar="MULTIADDR",
        default=None,
        help="run a remote-tracer collector (/libp2p/pubsub/tracer/1.0.0) on this libp2p address, "
        "e.g. /ip4/0.0.0.0/tcp/4001; its /p2p/ address is printed for the nodes' tracer configuration",
    )
    g.add_argument(
        "--pubsub.identity-seed",
        dest="pubsub_seed",
        metavar="HEX",
        default=None,
        help="64 hex digits: keeps the collector's peer id across restarts (default: a new id each start)",
    )
    add_pubsub_file_flag(g, "read a trace file (JSON tracer, PB tracer or traced gzip) at start; repeatable")
    add_pubsub_mapper_flags(g)
    sample = Tracing().sample_pubsub
    g.add_argument(
        "--tracing.sample.pubsub",
        dest="tracing_sample_pubsub",
        metavar="RATIO",
        type=float,
        default=sample,
        help=f"share of pubsub messages traced as spans, by message id, 0..1 (default {sample:g})",
    )


def add_pubsub_file_flag(g: argparse.ArgumentParser | argparse._ArgumentGroup, help_text: str) -> None:
    """``--pubsub.file``, repeatable (live mode reads the files at start, backfill writes their history)."""
    g.add_argument("--pubsub.file", dest="pubsub_files", metavar="PATH", action="append", default=[], help=help_text)


def add_pubsub_mapper_flags(g: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How the pubsub mapper bounds its labels and follows messages; live mode and backfill share them."""
    pubsub = Pubsub()
    g.add_argument(
        "--pubsub.topics",
        dest="pubsub_topics",
        metavar="LIST",
        default="",
        help="comma-separated topics always kept as label values",
    )
    g.add_argument(
        "--pubsub.topic-cap",
        dest="pubsub_topic_cap",
        metavar="N",
        type=int,
        default=pubsub.topic_cap,
        help="further topics that may become label values (first come); beyond them: other "
        f"(default {pubsub.topic_cap})",
    )
    g.add_argument(
        "--pubsub.window",
        dest="pubsub_window",
        metavar="SECONDS",
        type=float,
        default=pubsub.window_s,
        help="how long a message is followed for propagation; its reach is observed when it leaves "
        f"(default {pubsub.window_s:g})",
    )
    g.add_argument(
        "--pubsub.max-messages",
        dest="pubsub_max_messages",
        metavar="N",
        type=int,
        default=pubsub.max_messages,
        help=f"messages followed at once; past it the oldest leave early and are counted (default {pubsub.max_messages})",
    )


# -- from the namespace to Settings: the one place the shared flags are read ----------------------


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The ``--labels.*``, ``--histograms.profile`` and segment-cap flags (validated by their types)."""
    return Limits(
        protocol_cap=args.protocol_cap,
        other_cap=args.other_cap,
        series_per_family=args.series_per_family,
        series_per_node=args.series_per_node,
        max_segment_bytes=args.max_segment,
        **_given(histograms_profile=args.histograms_profile),
    )


def pubsub_files_from_args(args: argparse.Namespace) -> Pubsub:
    """``--pubsub.file`` and the mapper flags (all that backfill has; no collector)."""
    return Pubsub(
        files=tuple(args.pubsub_files),
        topics=tuple(t.strip() for t in (args.pubsub_topics or "").split(",") if t.strip()),
        topic_cap=max(0, args.pubsub_topic_cap),
        window_s=max(0.0, args.pubsub_window),
        max_messages=max(1, args.pubsub_max_messages),
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """What ``add_serving_flags`` declared, as ``Settings``; flags left unset (live mode's None) keep
    the defaults, which live mode's merged config then replaces."""
    return Settings(
        serving=Serving(
            log_format=args.log_format,
            web_config_file=args.web_config_file,
            **_given(listen=args.listen, telemetry_path=args.telemetry_path, log_level=args.log_level),
        ),
        limits=replace(limits_from_args(args), native_histograms=native_from_args(args)),
        tracing=Tracing(
            endpoint=args.otlp_endpoint or None,
            protocol=args.otlp_protocol,
            timeout_s=args.otlp_timeout,
            service_name=args.tracing_service_name,
            sample_connections=args.tracing_sample_connections,
            sample_streams=args.tracing_sample_streams,
            sample_dht=args.tracing_sample_dht,
            sample_pubsub=min(1.0, max(0.0, args.tracing_sample_pubsub)),
            max_open_spans=max(0, args.tracing_max_open_spans),
        ),
        pubsub=replace(pubsub_files_from_args(args), listen=args.pubsub_listen, identity_seed=_seed(args.pubsub_seed)),
    )


def _seed(hex_text: str | None) -> bytes | None:
    try:
        seed = bytes.fromhex(hex_text) if hex_text else None
        if seed is not None and len(seed) != 32:
            raise ValueError("needs 64 hex digits")
    except ValueError as exc:
        raise SystemExit(f"libp2p-exporter: --pubsub.identity-seed: {exc}") from exc
    return seed


def _given(**values: Any) -> dict[str, Any]:
    """The keyword arguments that were given (not None): the rest keep their dataclass defaults."""
    return {key: value for key, value in values.items() if value is not None}


def log_level(name: str) -> int:
    """A ``--log.level`` name as a logging level (INFO for anything unknown)."""
    return LOG_LEVELS.get(name, logging.INFO)


def setup_logging(level: str, fmt: str = "logfmt") -> None:
    """One handler on stderr in ``--log.format``, remote text escaped (exporter.logs)."""
    configure_logging(level if level in LEVELS else Serving().log_level, fmt)
