"""Live mode's YAML config file: parsed and checked whole, every problem named by file, line and key.

What the file may hold is the table ``_SCALARS`` (sections of settings) plus ``defaults.labels``,
``histograms`` and ``targets``; the settings share their names with the environment and the flags,
which ``app/config.py`` merges on top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter import settings
from exporter.app.argtypes import boolean, pattern_list
from exporter.app.config_values import (
    LABEL_NAME,
    RESERVED_LABELS,
    ConfigError,
    check_url,
    parse_duration,
    parse_int,
    parse_profile,
    parse_size,
)
from exporter.model.histogram_profiles import check_buckets, check_family, check_labels
from exporter.sources.options import default_name
from exporter.sources.sharding import parse_shard

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
        "queue_size": ("queue_size", parse_int),
        "max_frame_size": ("max_frame", parse_size),
    },
    "record": {
        "dir": ("record_dir", str),
        "max_size": ("record_max_size", parse_size),
        "max_age": ("record_max_age", parse_duration),
    },
    "probe": {
        "idle_timeout": ("probe_idle", parse_duration),
        "max_sessions": ("probe_max", parse_int),
        "enabled": ("probe_enable", boolean),
        "allow": ("probe_allow", pattern_list),
    },
    "sharding": {
        "shard": ("shard", parse_shard),
        "total_shards": ("total_shards", parse_int),
    },
    "metrics": {"nodes": ("metrics_nodes", str)},
}
METRICS_NODES = ("all", "none")
_TARGET_KEYS = {"url", "name", "interval", "retention", "stale_intervals", "labels"}
_HISTOGRAM_KEYS = ("families", "profile")
_FAMILY_KEYS = ("buckets", "labels")
# A family's override: (family, buckets or None, kept labels or None), None meaning "as the profile has it".
Override = tuple[str, tuple[float, ...] | None, tuple[str, ...] | None]
LOG_LEVELS = tuple(settings.LOG_LEVELS)


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
                keys = ", ".join(sorted([*section, "labels"] if key == "defaults" else section))
                problems.append(f"{at}:{_line(sk)}: {where}: unknown key (known: {keys})")
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
