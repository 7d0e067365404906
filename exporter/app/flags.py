"""The flags every serving command shares, defined once, and the log setup they drive."""

from __future__ import annotations

import argparse
import logging

from exporter import defaults
from exporter.app.argtypes import non_negative_int, positive_int
from exporter.logs import LEVELS
from exporter.logs import add_format_flag as add_log_format_flag
from exporter.logs import configure as configure_logging
from exporter.model.histogram_profiles import DEFAULT_PROFILE, PROFILES
from exporter.model.native import DEFAULT_MAX_BUCKETS, DEFAULT_SCHEMA, MAX_SCHEMA, MIN_SCHEMA, NativeSpec
from exporter.sinks.otel.config import add_otel_flags
from exporter.web_config import add_flag as add_web_config_flag


def add_serving_flags(p: argparse.ArgumentParser, *, from_config: bool = False) -> None:
    """``--web.*``, ``--log.*``, ``--labels.*``, ``--protocol.max-segment-bytes``, tracing and pubsub traces.

    Every serving command takes them from here, in the same groups with the same words, so that one
    command's ``--help`` reads like another's. ``from_config``: live mode, where the address, path
    and log level may also come from the environment or a config file, so the flags default to None
    and the merged config decides (the help states the same defaults).
    """

    def default(value: str) -> str | None:
        return None if from_config else value

    web = p.add_argument_group("serving (HTTP)")
    web.add_argument(
        "--web.listen-address",
        dest="listen",
        default=default(defaults.LISTEN_ADDRESS),
        help=f"address to serve metrics on (default {defaults.LISTEN_ADDRESS})",
    )
    web.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default=default(defaults.TELEMETRY_PATH),
        help=f"metrics path (default {defaults.TELEMETRY_PATH})",
    )
    add_web_config_flag(web)
    logs = p.add_argument_group("logging")
    logs.add_argument(
        "--log.level",
        dest="log_level",
        default=default(defaults.LOG_LEVEL),
        choices=list(defaults.LOG_LEVELS),
        help=f"log level (default {defaults.LOG_LEVEL})",
    )
    add_log_format_flag(logs)
    limits = p.add_argument_group("limits (what one node may cost: label values, series, segment size)")
    limits.add_argument(
        "--labels.protocol-cap",
        dest="protocol_cap",
        type=non_negative_int,
        default=defaults.PROTOCOL_CAP,
        help="protocol ids beyond the known list that may become label values before the rest is 'other' "
        f"(default {defaults.PROTOCOL_CAP})",
    )
    limits.add_argument(
        "--labels.other-cap",
        dest="other_cap",
        type=non_negative_int,
        default=defaults.OTHER_CAP,
        help=f"the same cap for security, muxer and event type names (default {defaults.OTHER_CAP})",
    )
    limits.add_argument(
        "--labels.series-per-family",
        dest="series_per_family",
        type=positive_int,
        default=defaults.SERIES_PER_FAMILY,
        help="series one node may cost in one metric family; further label combinations fold into "
        f"'other' (default {defaults.SERIES_PER_FAMILY})",
    )
    limits.add_argument(
        "--labels.series-per-node",
        dest="series_per_node",
        type=positive_int,
        default=defaults.SERIES_PER_NODE,
        help=f"the same budget over all of one node's families (default {defaults.SERIES_PER_NODE})",
    )
    add_histograms_flag(limits, default(DEFAULT_PROFILE))
    add_native_flags(limits)
    limits.add_argument(
        "--protocol.max-segment-bytes",
        dest="max_segment",
        type=positive_int,
        default=defaults.MAX_SEGMENT_BYTES,
        help="largest segment accepted; longer lengths are errors, never allocations "
        f"(default {defaults.MAX_SEGMENT_BYTES})",
    )
    add_otel_flags(p)
    add_pubsub_flags(p)


def add_histograms_flag(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = DEFAULT_PROFILE
) -> None:
    """``--histograms.profile``: which buckets and labels the histogram families get
    (``model/histogram_profiles.py``; per-family overrides only in live mode's config file)."""
    p.add_argument(
        "--histograms.profile",
        dest="histograms_profile",
        choices=list(PROFILES),
        default=default,
        help="histogram buckets and labels: default (go-libp2p's layouts, every label) or lean "
        f"(fewer bounds and labels, about half the series per node; docs/metrics.md) (default {DEFAULT_PROFILE})",
    )


def _schema(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not MIN_SCHEMA <= value <= MAX_SCHEMA:
        raise argparse.ArgumentTypeError(f"{value} is outside {MIN_SCHEMA}..{MAX_SCHEMA}")
    return value


def add_native_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--histograms.native`` and its settings: native buckets beside the profile's classic ones,
    exposed in the protobuf format (``model/native.py``; docs/metrics.md#native-histograms)."""
    p.add_argument(
        "--histograms.native",
        dest="histograms_native",
        action="store_true",
        help="also keep native (exponential) buckets for the six histogram families and expose them to "
        "scrapers that negotiate protobuf (Prometheus with --enable-feature=native-histograms); text and "
        "OpenMetrics keep the profile's classic buckets",
    )
    p.add_argument(
        "--histograms.native-schema",
        dest="histograms_native_schema",
        metavar="N",
        type=_schema,
        default=DEFAULT_SCHEMA,
        help=f"starting resolution: 2^N buckets per power of two, {MIN_SCHEMA}..{MAX_SCHEMA} "
        f"(default {DEFAULT_SCHEMA}: buckets 9%% wide)",
    )
    p.add_argument(
        "--histograms.native-max-buckets",
        dest="histograms_native_max_buckets",
        metavar="N",
        type=positive_int,
        default=DEFAULT_MAX_BUCKETS,
        help="populated native buckets per series; past it the series halves its resolution "
        f"(default {DEFAULT_MAX_BUCKETS})",
    )
    p.add_argument(
        "--histograms.native-classic",
        dest="histograms_native_classic",
        action="store_true",
        help="in protobuf, send the classic buckets alongside the native ones (Prometheus >= 2.45 can "
        "store both with scrape_classic_histograms; 2.42 keeps the native ones)",
    )


def native_spec(args: argparse.Namespace) -> NativeSpec | None:
    """The native bucketing the flags ask for, or None (classic only)."""
    if not getattr(args, "histograms_native", False):
        return None
    return NativeSpec(
        schema=getattr(args, "histograms_native_schema", DEFAULT_SCHEMA),
        max_buckets=getattr(args, "histograms_native_max_buckets", DEFAULT_MAX_BUCKETS),
        classic=getattr(args, "histograms_native_classic", False),
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
    g.add_argument(
        "--tracing.sample.pubsub",
        dest="tracing_sample_pubsub",
        metavar="RATIO",
        type=float,
        default=1.0,
        help="share of pubsub messages traced as spans, by message id, 0..1 (default 1)",
    )


def add_pubsub_file_flag(g: argparse.ArgumentParser | argparse._ArgumentGroup, help_text: str) -> None:
    """``--pubsub.file``, repeatable (live mode reads the files at start, backfill writes their history)."""
    g.add_argument("--pubsub.file", dest="pubsub_files", metavar="PATH", action="append", default=[], help=help_text)


def add_pubsub_mapper_flags(g: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How the pubsub mapper bounds its labels and follows messages; live mode and backfill share them."""
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
        default=32,
        help="further topics that may become label values (first come); beyond them: other (default 32)",
    )
    g.add_argument(
        "--pubsub.window",
        dest="pubsub_window",
        metavar="SECONDS",
        type=float,
        default=120.0,
        help="how long a message is followed for propagation; its reach is observed when it leaves (default 120)",
    )
    g.add_argument(
        "--pubsub.max-messages",
        dest="pubsub_max_messages",
        metavar="N",
        type=int,
        default=50_000,
        help="messages followed at once; past it the oldest leave early and are counted (default 50000)",
    )


def log_level(name: str) -> int:
    """A ``--log.level`` name as a logging level (INFO for anything unknown)."""
    return defaults.LOG_LEVELS.get(name, logging.INFO)


def setup_logging(level: str, fmt: str = "logfmt") -> None:
    """One handler on stderr in ``--log.format``, remote text escaped (exporter.logs)."""
    configure_logging(level if level in LEVELS else defaults.LOG_LEVEL, fmt)
