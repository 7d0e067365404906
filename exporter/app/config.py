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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter import defaults
from exporter.app.argtypes import boolean, pattern_list
from exporter.model.histogram_profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    HistogramProfile,
    check_buckets,
    check_family,
    check_labels,
    profile,
    with_overrides,
)
from exporter.server import parse_listen
from exporter.sources.options import DEFAULT_INTERVAL_MS, DEFAULT_RETENTION_MS, SessionOptions, Target, default_name
from exporter.sources.sharding import Shard, parse_shard

ENV_PREFIX = "LIBP2P_EXPORTER_"
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {"node", "instance", "job"}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


class ConfigError(Exception):
    """One or more problems, each a line naming where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> float:
    """Seconds from ``1.5`` (seconds), ``500ms``, ``2s``, ``5m`` or ``1h``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 1s, 500ms or 5m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration (use 500ms, 1s, 5m, 1h or a number of seconds)")
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from ``1048576``, ``64MiB``, ``10MB``..."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 64MiB")
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a size (use bytes or 512KiB, 64MiB, 1GB)")
        size = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])
    if size <= 0:
        raise ValueError("must be positive")
    return size


def parse_profile(value: Any) -> str:
    """A histogram profile name (``--histograms.profile``)."""
    if value not in PROFILES:
        raise ValueError(f"{value!r} is not a histogram profile (one of {', '.join(PROFILES)})")
    return str(value)


def check_url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise ValueError("expected a ws:// or wss:// URL")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL with a host")
    return url


def parse_target_arg(text: str) -> tuple[str, str]:
    """``ws://…`` or ``NAME=ws://…`` (from a flag or the environment)."""
    name, sep, url = text.partition("=")
    if sep and "://" not in name:
        return name.strip(), url.strip()
    return "", text.strip()


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


# -- the file ------------------------------------------------------------------------------------

# key -> (setting, parser); a setting is a flat name shared with the environment and the flags.
_SCALARS: dict[str, dict[str, tuple[str, Any]]] = {
    "web": {
        "listen_address": ("listen", str),
        "telemetry_path": ("telemetry_path", str),
    },
    "log": {"level": ("log_level", str)},
    "defaults": {
        "interval": ("interval", parse_duration),
        "retention": ("retention", parse_duration),
        "stale_intervals": ("stale_intervals", float),
    },
    "session": {
        "backoff_initial": ("backoff_initial", parse_duration),
        "backoff_max": ("backoff_max", parse_duration),
        "healthy_after": ("healthy_after", parse_duration),
        "connect_timeout": ("connect_timeout", parse_duration),
        "handshake_timeout": ("handshake_timeout", parse_duration),
        "heartbeat": ("heartbeat", parse_duration),
        "read_timeout": ("read_timeout", parse_duration),
        "queue_size": ("queue_size", int),
        "max_frame_size": ("max_frame", parse_size),
    },
    "record": {
        "dir": ("record_dir", str),
        "max_size": ("record_max_size", parse_size),
        "max_age": ("record_max_age", parse_duration),
    },
    "probe": {
        "idle_timeout": ("probe_idle", parse_duration),
        "max_sessions": ("probe_max", int),
        "enabled": ("probe_enable", boolean),
        "allow": ("probe_allow", pattern_list),
    },
    "sharding": {
        "shard": ("shard", parse_shard),
        "total_shards": ("total_shards", int),
    },
    "metrics": {"nodes": ("metrics_nodes", str)},
}
METRICS_NODES = ("all", "none")
_TARGET_KEYS = {"url", "name", "interval", "retention", "stale_intervals", "labels"}
_HISTOGRAM_KEYS = ("families", "profile")
_FAMILY_KEYS = ("buckets", "labels")
# A family's override: (family, buckets or None, kept labels or None), None meaning "as the profile has it".
Override = tuple[str, tuple[float, ...] | None, tuple[str, ...] | None]
LOG_LEVELS = tuple(defaults.LOG_LEVELS)


@dataclass
class FileConfig:
    settings: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    histograms: list[Override] = field(default_factory=list)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ValueError("expected a single value, not a list or a mapping")
    return yaml.SafeLoader("").construct_object(node)


def _labels(node: yaml.Node, where: str, problems: list[str], at: str) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        problems.append(f"{at}:{_line(node)}: {where}: expected a mapping of label names to values")
        return {}
    out: dict[str, str] = {}
    for k, v in node.value:
        key = str(_scalar(k)) if isinstance(k, yaml.ScalarNode) else "?"
        if not LABEL_NAME.match(key) or key.startswith("__"):
            problems.append(f"{at}:{_line(k)}: {where}.{key}: not a valid Prometheus label name")
        elif key in RESERVED_LABELS:
            problems.append(f"{at}:{_line(k)}: {where}.{key}: label {key!r} is set by the exporter or Prometheus")
        try:
            out[key] = str(_scalar(v))
        except ValueError as exc:
            problems.append(f"{at}:{_line(v)}: {where}.{key}: {exc}")
    return out


def load_file(path: str | os.PathLike[str]) -> FileConfig:
    """Parse and validate a config file; ConfigError lists every problem with its line."""
    at = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{at}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError:
        raise ConfigError([f"{at}: not a text file (a YAML config file is expected)"]) from None
    if "\x00" in text:  # YAML's reader would say so in two lines, naming a "<unicode string>"
        raise ConfigError([f"{at}: not a text file (a YAML config file is expected)"])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:
        raise ConfigError([f"{at}: not a YAML text file: {exc.reason} at character {exc.position}"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{at}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    out = FileConfig()
    problems: list[str] = []
    if root is None:
        return out
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([f"{at}:{_line(root)}: the file must be a mapping (web, defaults, targets, ...)"])
    for knode, vnode in root.value:
        key = _scalar(knode)
        if key == "targets":
            out.targets = _targets(vnode, problems, at)
            continue
        if key == "histograms":
            _histograms(vnode, out, problems, at)
            continue
        section = _SCALARS.get(key)
        if section is None:
            known = ", ".join(sorted([*_SCALARS, "histograms", "targets"]))
            problems.append(f"{at}:{_line(knode)}: {key}: unknown key (known: {known})")
            continue
        if not isinstance(vnode, yaml.MappingNode):
            problems.append(f"{at}:{_line(vnode)}: {key}: expected a mapping")
            continue
        for sk, sv in vnode.value:
            sub = _scalar(sk)
            where = f"{key}.{sub}"
            if key == "defaults" and sub == "labels":
                out.labels = _labels(sv, where, problems, at)
                continue
            spec = section.get(sub)
            if spec is None:
                problems.append(f"{at}:{_line(sk)}: {where}: unknown key (known: {', '.join(sorted(section))})")
                continue
            setting, parse = spec
            try:
                raw = _scalar(sv)
                if raw is None and setting in ("read_timeout", "heartbeat"):
                    out.settings[setting] = None
                    continue
                value = parse(raw)
                if setting == "log_level" and value not in LOG_LEVELS:
                    raise ValueError(f"one of {', '.join(LOG_LEVELS)}")
                if setting == "metrics_nodes" and value not in METRICS_NODES:
                    raise ValueError(f"one of {', '.join(METRICS_NODES)}")
                if setting in ("interval", "stale_intervals", "queue_size", "probe_max", "total_shards") and value <= 0:
                    raise ValueError("must be positive")
                if setting == "telemetry_path" and not str(value).startswith("/"):
                    raise ValueError("must start with /")
                out.settings[setting] = value
            except (ValueError, TypeError) as exc:
                problems.append(f"{at}:{_line(sv)}: {where}: {exc}")
    if problems:
        raise ConfigError(problems)
    return out


def _value(node: yaml.Node) -> Any:
    """A scalar or a list of scalars (bucket bounds, label names), as YAML reads it."""
    if isinstance(node, yaml.MappingNode):
        raise ValueError("expected a list, not a mapping")
    value = yaml.SafeLoader("").construct_object(node, deep=True)
    if isinstance(value, list):  # YAML 1.1 reads 1e3 as text; a bound written so is still a number
        return [_number_text(v) for v in value]
    return value


def _number_text(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _histograms(node: yaml.Node, out: FileConfig, problems: list[str], at: str) -> None:
    """``histograms: {profile: lean, families: {NAME: {buckets: [...], labels: [...]}}}``."""
    if not isinstance(node, yaml.MappingNode):
        problems.append(f"{at}:{_line(node)}: histograms: expected a mapping (profile, families)")
        return
    for k, v in node.value:
        key = _scalar(k)
        if key == "profile":
            try:
                out.settings["histograms_profile"] = parse_profile(_scalar(v))
            except ValueError as exc:
                problems.append(f"{at}:{_line(v)}: histograms.profile: {exc}")
        elif key == "families":
            if not isinstance(v, yaml.MappingNode):
                problems.append(f"{at}:{_line(v)}: histograms.families: expected a mapping of family names")
                continue
            for fk, fv in v.value:
                override = _family_override(fk, fv, problems, at)
                if override is not None:
                    out.histograms.append(override)
        else:
            problems.append(f"{at}:{_line(k)}: histograms.{key}: unknown key (known: {', '.join(_HISTOGRAM_KEYS)})")


def _family_override(knode: yaml.Node, vnode: yaml.Node, problems: list[str], at: str) -> Override | None:
    name = _scalar(knode)
    where = f"histograms.families.{name}"
    try:
        family = check_family(name)
    except ValueError as exc:
        problems.append(f"{at}:{_line(knode)}: {where}: {exc}")
        return None
    if not isinstance(vnode, yaml.MappingNode):
        problems.append(f"{at}:{_line(vnode)}: {where}: expected a mapping (buckets, labels)")
        return None
    buckets: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    ok = True
    for k, v in vnode.value:
        key = _scalar(k)
        try:
            if key == "buckets":
                buckets = check_buckets(_value(v))
            elif key == "labels":
                labels = check_labels(family, _value(v))
            else:
                raise ValueError(f"unknown key (known: {', '.join(_FAMILY_KEYS)})")
        except ValueError as exc:
            problems.append(f"{at}:{_line(v)}: {where}.{key}: {exc}")
            ok = False
    return (family, buckets, labels) if ok else None


def _targets(node: yaml.Node, problems: list[str], at: str) -> list[dict[str, Any]]:
    if not isinstance(node, yaml.SequenceNode):
        problems.append(f"{at}:{_line(node)}: targets: expected a list")
        return []
    out: list[dict[str, Any]] = []
    for i, item in enumerate(node.value):
        where = f"targets[{i}]"
        if isinstance(item, yaml.ScalarNode):  # a bare URL
            try:
                out.append({"url": check_url(_scalar(item)), "line": _line(item), "index": i})
            except ValueError as exc:
                problems.append(f"{at}:{_line(item)}: {where}: {exc}")
            continue
        if not isinstance(item, yaml.MappingNode):
            problems.append(f"{at}:{_line(item)}: {where}: expected a URL or a mapping with url:")
            continue
        t: dict[str, Any] = {"line": _line(item), "index": i}
        for k, v in item.value:
            key = _scalar(k)
            kw = f"{where}.{key}"
            try:
                if key not in _TARGET_KEYS:
                    raise ValueError(f"unknown key (known: {', '.join(sorted(_TARGET_KEYS))})")
                if key == "labels":
                    t["labels"] = _labels(v, kw, problems, at)
                elif key == "url":
                    t["url"] = None  # present, even if it turns out invalid
                    t["url"] = check_url(_scalar(v))
                elif key == "name":
                    name = _scalar(v)
                    if not isinstance(name, str) or not name.strip():
                        raise ValueError("must be a non-empty string")
                    t["name"] = name
                elif key in ("interval", "retention"):
                    t[key] = parse_duration(_scalar(v))
                    if key == "interval" and t[key] <= 0:
                        raise ValueError("must be positive")
                else:
                    t[key] = float(_scalar(v))
                    if t[key] <= 0:
                        raise ValueError("must be positive")
            except (ValueError, TypeError) as exc:
                problems.append(f"{at}:{_line(v)}: {kw}: {exc}")
        if "url" not in t:
            problems.append(f"{at}:{_line(item)}: {where}: url is required")
            continue
        if t["url"] is None:
            continue
        out.append(t)
    first_at: dict[str, int] = {}
    for t in out:
        name = t.get("name") or default_name(t["url"])
        if name in first_at:
            problems.append(
                f"{at}:{t['line']}: targets[{t['index']}]: name {name!r} is already used by the target at line "
                f"{first_at[name]}; give each a distinct name"
            )
        else:
            first_at[name] = t["line"]
    return out


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
    "TOTAL_SHARDS": ("total_shards", int),
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
    for t in targets:
        if t.name in seen:
            problems.append(f"target name {t.name!r} is used twice ({seen[t.name]} and {t.url}); give each a name")
        seen[t.name] = t.url
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
