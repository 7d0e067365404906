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
from dataclasses import dataclass, field
from typing import Any

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
from exporter.settings import Probe, Recording, Serving
from exporter.sources.options import SessionOptions, Target
from exporter.sources.sharding import Shard, parse_shard


@dataclass(frozen=True)
class LiveConfig:
    """Everything live mode needs, after merging flags, environment, file and defaults.

    Its parts' defaults are ``exporter/settings.py``'s and ``SessionOptions``'; ``build`` passes only
    what a flag, the environment or the file gave."""

    serving: Serving = field(default_factory=Serving)
    targets: tuple[Target, ...] = ()
    options: SessionOptions = field(default_factory=SessionOptions)
    recording: Recording = field(default_factory=Recording)
    probe: Probe = field(default_factory=Probe)  # /probe dials what it is told: off unless asked for
    histograms: HistogramProfile = field(default_factory=profile)
    shard: Shard = field(default_factory=Shard)  # this replica's part of the targets
    metrics_nodes: str = METRICS_NODES[0]  # "all": nodes on /metrics too; "none": /probe (and discovery) only

    @property
    def owned_targets(self) -> list[Target]:
        """The targets this replica watches: all of them, or its shard's."""
        return self.shard.select(list(self.targets))


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
    """Merge flag > environment > file > default into a LiveConfig (ConfigError on any problem).

    Three steps: parse (each source's values, each checked where it is read: the file by
    ``config_file``, the environment by ``from_env``, the flags by their argparse types), validate
    (the merged whole, every problem at once), assemble (the frozen LiveConfig, whose parts keep their
    dataclass defaults for whatever nobody gave)."""
    env = os.environ if env is None else env
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    fc = load_file(config_file) if config_file else FileConfig()
    env_settings, env_targets = from_env(env)
    s: dict[str, Any] = {**fc.settings, **env_settings, **{k: v for k, v in flags.items() if v is not None}}

    opts, serving, recording, probe = _parts(s)
    problems = _check(s, opts, serving, probe)
    shard = Shard()
    try:
        shard = Shard(s.get("shard", 0), s.get("total_shards", 1))
    except ValueError as exc:
        problems.append(f"sharding: {exc}")
    histograms = profile()
    try:
        histograms = with_overrides(profile(s.get("histograms_profile") or DEFAULT_PROFILE), fc.histograms)
    except ValueError as exc:
        problems.append(f"histograms.profile: {exc}")
    targets = _targets(fc, flag_targets, env_targets, opts, problems)
    if problems:
        raise ConfigError(problems)
    return LiveConfig(
        serving=serving,
        targets=tuple(targets),
        options=opts,
        recording=recording,
        probe=probe,
        histograms=histograms,
        shard=shard,
        metrics_nodes=s.get("metrics_nodes", METRICS_NODES[0]),
    )


def _parts(s: Mapping[str, Any]) -> tuple[SessionOptions, Serving, Recording, Probe]:
    """The typed parts of the merged settings ``s``: only what was given is passed, so everything
    else keeps its one default (``exporter/settings.py``, ``SessionOptions``)."""
    opts = SessionOptions(
        **_given(
            s,
            interval="interval_ms",
            retention="retention_ms",
            stale_intervals="stale_intervals",
            backoff_initial="backoff_initial_s",
            backoff_max="backoff_max_s",
            healthy_after="healthy_after_s",
            connect_timeout="connect_timeout_s",
            handshake_timeout="handshake_timeout_s",
            heartbeat="heartbeat_s",
            read_timeout="read_timeout_s",
            queue_size="queue_size",
            max_frame="max_frame_bytes",
            max_segment="max_segment_bytes",
        )
    )
    serving = Serving(
        **_given(
            s,
            listen="listen",
            telemetry_path="telemetry_path",
            log_level="log_level",
            log_format="log_format",
            web_config_file="web_config_file",
        )
    )
    recording = Recording(**_given(s, record_dir="dir", record_max_size="max_bytes", record_max_age="max_age_s"))
    probe = Probe(
        enabled=bool(s.get("probe_enable") or s.get("probe_allow")),
        allow=tuple(s.get("probe_allow") or ()),
        **_given(s, probe_idle="idle_s", probe_max="max_sessions"),
    )
    return opts, serving, recording, probe


def _check(s: Mapping[str, Any], opts: SessionOptions, serving: Serving, probe: Probe) -> list[str]:
    """What no single value shows: the merged settings against each other. The file's values are
    checked where they are read; flags and the environment meet the same checks here."""
    problems: list[str] = []
    try:
        parse_listen(serving.listen)
    except ValueError as exc:
        problems.append(f"web.listen_address: {exc}")
    for pattern in probe.allow:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"--probe.allow {pattern!r}: not a regular expression: {exc}")
    metrics_nodes = s.get("metrics_nodes", METRICS_NODES[0])
    if metrics_nodes not in METRICS_NODES:
        problems.append(f"metrics.nodes: {metrics_nodes!r} is not one of {', '.join(METRICS_NODES)}")
    if opts.backoff_max_s < opts.backoff_initial_s:
        problems.append("session.backoff_max must not be below session.backoff_initial")
    if s.get("interval", 1) <= 0:
        problems.append(f"interval: must be positive, not {s['interval']}")
    if opts.stale_intervals <= 0:
        problems.append(
            f"stale_intervals: must be positive, not {opts.stale_intervals} (the data would never be exported)"
        )
    return problems


def _targets(
    fc: FileConfig,
    flag_targets: list[str],
    env_targets: list[tuple[str, str]] | None,
    opts: SessionOptions,
    problems: list[str],
) -> list[Target]:
    """The one targets setting: flags replace the environment's, which replace the file's."""
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
    seen: dict[str, str] = {}
    for target in targets:
        if target.name in seen:
            problems.append(
                f"target name {target.name!r} is used twice ({seen[target.name]} and {target.url}); give each a name"
            )
        seen[target.name] = target.url
    return targets


# How a merged setting becomes a field: seconds to milliseconds, a heartbeat of 0 to none.
_CONVERT: dict[str, Any] = {
    "interval": lambda v: max(1, round(v * 1000)),
    "retention": lambda v: round(v * 1000),
    "heartbeat": lambda v: v or None,
}


def _given(settings: Mapping[str, Any], **fields: str) -> dict[str, Any]:
    """Keyword arguments for the fields whose setting was given (``setting=field``); a field whose
    setting nobody gave is left out, so its dataclass default applies."""
    return {name: _CONVERT.get(key, lambda v: v)(settings[key]) for key, name in fields.items() if key in settings}


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
