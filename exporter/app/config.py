"""Live-mode configuration: a YAML file, environment variables and flags, merged in one order.

Precedence, for every setting: command-line flag, then environment variable, then config file,
then the built-in default. The targets list is one setting: ``--target`` flags replace
``LIBP2P_EXPORTER_TARGETS``, which replaces the file's ``targets:``. A target's own ``interval``,
``retention`` or ``stale_intervals`` in the file beats the global one for that target.

Errors name the file, the line and the key (``cfg.yml:7: targets[1].interval: ...``), all at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from exporter import defaults
from exporter.app.config_file import METRICS_NODES, FileConfig, load_file
from exporter.app.config_values import (
    ENV_PREFIX,
    ConfigError,
    check_url,
    parse_duration,
    parse_int,
    parse_profile,
    parse_size,
    parse_target_arg,
)
from exporter.model.histogram_profiles import (
    DEFAULT_PROFILE,
    HistogramProfile,
    profile,
    with_overrides,
)
from exporter.server import parse_listen
from exporter.sources.options import DEFAULT_INTERVAL_MS, DEFAULT_RETENTION_MS, SessionOptions, Target
from exporter.sources.sharding import Shard, parse_shard


@dataclass
class LiveConfig:
    """Everything live mode needs, after merging flags, environment, file and defaults."""

    listen: str = defaults.LISTEN_ADDRESS
    telemetry_path: str = defaults.TELEMETRY_PATH
    log_level: str = defaults.LOG_LEVEL
    targets: list[Target] = field(default_factory=list)
    options: SessionOptions = field(default_factory=SessionOptions)
    record_dir: str | None = None
    record_max_bytes: int = 64 << 20
    record_max_age_s: float = 3600.0
    probe_idle_s: float = 300.0
    probe_max_sessions: int = 1000
    probe_enabled: bool = False  # /probe dials what it is told: off unless asked for
    probe_allow: list[str] = field(default_factory=list)  # regexes a probe target must fully match
    histograms: HistogramProfile = field(default_factory=profile)
    shard: Shard = field(default_factory=Shard)  # this replica's part of the targets
    metrics_nodes: str = "all"  # "all": nodes on /metrics too; "none": /probe (and discovery) only

    @property
    def owned_targets(self) -> list[Target]:
        """The targets this replica watches: all of them, or its shard's."""
        return self.shard.select(self.targets)


# -- the environment ------------------------------------------------------------------------------

_ENV: dict[str, tuple[str, Any]] = {
    "LISTEN_ADDRESS": ("listen", str),
    "TELEMETRY_PATH": ("telemetry_path", str),
    "LOG_LEVEL": ("log_level", str),
    "INTERVAL": ("interval", parse_duration),
    "RETENTION": ("retention", parse_duration),
    "STALE_INTERVALS": ("stale_intervals", float),
    "RECORD_DIR": ("record_dir", str),
    "RECORD_MAX_SIZE": ("record_max_size", parse_size),
    "RECORD_MAX_AGE": ("record_max_age", parse_duration),
    "PROBE_IDLE_TIMEOUT": ("probe_idle", parse_duration),
    "HISTOGRAMS_PROFILE": ("histograms_profile", parse_profile),
    "SHARD": ("shard", parse_shard),
    "TOTAL_SHARDS": ("total_shards", parse_int),
    "METRICS_NODES": ("metrics_nodes", str),
}


def from_env(env: Mapping[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
    settings: dict[str, Any] = {}
    problems: list[str] = []
    for suffix, (setting, parse) in _ENV.items():
        raw = env.get(ENV_PREFIX + suffix)
        if raw is None or raw == "":
            continue
        try:
            settings[setting] = parse(raw)
        except ValueError as exc:
            problems.append(f"${ENV_PREFIX}{suffix}: {exc}")
    targets = None
    raw_targets = env.get(ENV_PREFIX + "TARGETS", "")
    if raw_targets.strip():
        targets = [parse_target_arg(t) for t in re.split(r"[,\s]+", raw_targets.strip()) if t]
        for _, url in targets:
            try:
                check_url(url)
            except ValueError as exc:
                problems.append(f"${ENV_PREFIX}TARGETS: {exc}")
    if problems:
        raise ConfigError(problems)
    return settings, targets


# -- merging ---------------------------------------------------------------------------------------


def build(
    flags: dict[str, Any],
    flag_targets: list[str],
    config_file: str | None,
    env: Mapping[str, str] | None = None,
) -> LiveConfig:
    """Merge flag > environment > file > default into a LiveConfig (ConfigError on any problem)."""
    env = os.environ if env is None else env
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    fc = load_file(config_file) if config_file else FileConfig()
    env_settings, env_targets = from_env(env)
    s: dict[str, Any] = {**fc.settings, **env_settings, **{k: v for k, v in flags.items() if v is not None}}
    problems: list[str] = []

    base = SessionOptions()
    interval_s = s.get("interval", DEFAULT_INTERVAL_MS / 1000)
    retention_s = s.get("retention", DEFAULT_RETENTION_MS / 1000)
    opts = replace(
        base,
        interval_ms=max(1, round(interval_s * 1000)),
        retention_ms=round(retention_s * 1000),
        stale_intervals=s.get("stale_intervals", base.stale_intervals),
        backoff_initial_s=s.get("backoff_initial", base.backoff_initial_s),
        backoff_max_s=s.get("backoff_max", base.backoff_max_s),
        healthy_after_s=s.get("healthy_after", base.healthy_after_s),
        connect_timeout_s=s.get("connect_timeout", base.connect_timeout_s),
        handshake_timeout_s=s.get("handshake_timeout", base.handshake_timeout_s),
        heartbeat_s=s.get("heartbeat", base.heartbeat_s) or None,
        read_timeout_s=s.get("read_timeout", base.read_timeout_s),
        queue_size=s.get("queue_size", base.queue_size),
        max_frame_bytes=s.get("max_frame", base.max_frame_bytes),
    )
    try:
        parse_listen(s.get("listen", defaults.LISTEN_ADDRESS))
    except ValueError as exc:
        problems.append(f"web.listen_address: {exc}")
    for pattern in s.get("probe_allow") or []:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"--probe.allow {pattern!r}: not a regular expression: {exc}")
    shard = Shard()
    try:
        shard = Shard(s.get("shard", 0), s.get("total_shards", 1))
    except ValueError as exc:
        problems.append(f"sharding: {exc}")
    if s.get("metrics_nodes", "all") not in METRICS_NODES:
        problems.append(f"metrics.nodes: {s['metrics_nodes']!r} is not one of {', '.join(METRICS_NODES)}")
    if opts.backoff_max_s < opts.backoff_initial_s:
        problems.append("session.backoff_max must not be below session.backoff_initial")
    # The file's values are checked where they are read; flags and the environment meet them here.
    if interval_s <= 0:
        problems.append(f"interval: must be positive, not {interval_s}")
    if opts.stale_intervals <= 0:
        problems.append(
            f"stale_intervals: must be positive, not {opts.stale_intervals} (the data would never be exported)"
        )

    targets: list[Target] = []
    if flag_targets or env_targets is not None:
        pairs = [parse_target_arg(t) for t in flag_targets] if flag_targets else (env_targets or [])
        for name, url in pairs:
            try:
                check_url(url)
            except ValueError as exc:
                problems.append(f"--target: {exc}")
                continue
            targets.append(
                Target(
                    url=url,
                    name=name,
                    interval_ms=opts.interval_ms,
                    retention_ms=opts.retention_ms,
                    labels=dict(fc.labels),
                )
            )
    else:
        for t in fc.targets:
            targets.append(
                Target(
                    url=t["url"],
                    name=t.get("name", ""),
                    interval_ms=round(t["interval"] * 1000) if "interval" in t else opts.interval_ms,
                    retention_ms=round(t["retention"] * 1000) if "retention" in t else opts.retention_ms,
                    stale_intervals=t.get("stale_intervals"),
                    labels={**fc.labels, **t.get("labels", {})},
                )
            )
    histograms = profile()
    try:
        histograms = with_overrides(profile(s.get("histograms_profile") or DEFAULT_PROFILE), fc.histograms)
    except ValueError as exc:
        problems.append(f"histograms.profile: {exc}")
    seen: dict[str, str] = {}
    for target in targets:
        if target.name in seen:
            problems.append(
                f"target name {target.name!r} is used twice ({seen[target.name]} and {target.url}); give each a name"
            )
        seen[target.name] = target.url
    if problems:
        raise ConfigError(problems)
    return LiveConfig(
        listen=s.get("listen", defaults.LISTEN_ADDRESS),
        telemetry_path=s.get("telemetry_path", defaults.TELEMETRY_PATH),
        log_level=s.get("log_level", defaults.LOG_LEVEL),
        targets=targets,
        options=opts,
        record_dir=s.get("record_dir"),
        record_max_bytes=s.get("record_max_size", 64 << 20),
        record_max_age_s=s.get("record_max_age", 3600.0),
        probe_idle_s=s.get("probe_idle", 300.0),
        probe_max_sessions=s.get("probe_max", 1000),
        probe_enabled=bool(s.get("probe_enable") or s.get("probe_allow")),
        probe_allow=list(s.get("probe_allow") or []),
        histograms=histograms,
        shard=shard,
        metrics_nodes=s.get("metrics_nodes", "all"),
    )


def describe(histograms: HistogramProfile) -> str:
    """A profile in one line, with what differs from its base: for ``check-config`` and the start-up log."""
    base = profile(histograms.name.split("+")[0])
    changed = [
        f"{name}: {len(layout.buckets)} bounds, labels [{', '.join(layout.labels)}]"
        for name, layout in histograms.layouts.items()
        if layout != base.layout(name)
    ]
    return histograms.name + (f" ({'; '.join(changed)})" if changed else "")


def check_file(path: str) -> tuple[bool, str]:
    """For ``check-config``: (ok, the text to print)."""
    try:
        fc = load_file(path)
        cfg = build({}, [], path, env={})
    except ConfigError as exc:
        return False, "\n".join(exc.problems)
    lines = [f"{path}: OK, {len(cfg.targets)} target(s)"]
    if cfg.shard.sharded:
        lines[0] += f"; {cfg.shard} watches {len(cfg.owned_targets)}"
    for t in cfg.targets:
        extra = f", labels {t.labels}" if t.labels else ""
        owner = f" (shard {cfg.shard.of(t.name)})" if cfg.shard.sharded else ""
        lines.append(f"  {t.name}: {t.url} every {t.interval_ms} ms{extra}{owner}")
    if cfg.histograms != profile():
        lines.append(f"  histograms: {describe(cfg.histograms)}")
    lines.extend(f"  warning: {problem}" for problem in cfg.histograms.warnings())
    if not fc.targets:
        lines.append("  (no targets: give them with --target, LIBP2P_EXPORTER_TARGETS, or use /probe)")
    return True, "\n".join(lines)
