"""Alert thresholds and windows: one documented table shared by the rule files and the dashboards.

Every value here can be overridden when generating the rules (``python -m dashboards --set NAME=VALUE``
or ``--params FILE.yaml``), so the committed rule files are the defaults, not the only choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Param:
    default: str | float
    doc: str


PARAMS: dict[str, Param] = {
    "job": Param(
        "libp2p-exporter(-probe)?",
        "Prometheus job name(s) of the exporter targets, as a regex: the /metrics job and the /probe job "
        "docs/live.md shows.",
    ),
    "runbook_base": Param(
        "",
        "Absolute http(s) URL where deploy/README.md is served; when set, every alert gets "
        "runbook_url = BASE#<alert>. Empty: only the relative runbook annotation.",
    ),
    # peers: a level under a floor, and a sudden drop
    "peer_floor_warning": Param(10, "Warn when a node holds fewer peers than this ..."),
    "peer_floor_warning_for": Param("5m", "... for this long."),
    "peer_floor_critical": Param(3, "Page when a node holds fewer peers than this ..."),
    "peer_floor_critical_for": Param("15m", "... for this long."),
    "peer_drop_ratio": Param(0.5, "Warn when the peer count fell by this share of its recent maximum ..."),
    "peer_drop_window": Param("30m", "... the maximum taken over this window ..."),
    "peer_drop_for": Param("2m", "... and the drop lasts this long."),
    # churn
    "churn_per_peer_per_minute": Param(
        0.5, "Peer churn: (peers connected + disconnected per minute) / current peers above this ..."
    ),
    "churn_window": Param("5m", "... rates taken over this window ..."),
    "churn_for": Param("10m", "... for this long."),
    "conn_churn_per_peer_per_minute": Param(
        1.0, "Connection churn: (connections opened + closed per minute) / current peers above this."
    ),
    "short_lived_seconds": Param(
        8,
        "A connection that closed within this many seconds is short-lived (a bucket bound: 1/16 s × 2^n; the lean histogram profile keeps 8 and 1/16 s × 4^n).",
    ),
    "short_lived_share": Param(0.5, "Warn when more than this share of closed connections were short-lived ..."),
    "short_lived_window": Param("10m", "... over this window ..."),
    "short_lived_min_closes_per_minute": Param(1, "... and at least this many connections closed per minute ..."),
    "short_lived_for": Param("10m", "... for this long."),
    "no_inbound_window": Param("20m", "Warn when no inbound connection opened for this long ..."),
    "no_inbound_for": Param("5m", "... and that lasts this long (a node behind NAT never gets any: silence it)."),
    # dht
    "dht_shrink_ratio": Param(0.3, "Warn when the routing table lost this share of its recent maximum ..."),
    "dht_shrink_window": Param("30m", "... the maximum taken over this window ..."),
    "dht_shrink_for": Param("10m", "... for this long."),
    # peerstore (this project's schema extension)
    "peerstore_growth_ratio": Param(
        0.5, "Warn when known peers grew by more than this share of their smallest count in the window ..."
    ),
    "peerstore_growth_min_peers": Param(1000, "... by at least this many peers ..."),
    "peerstore_peers_growth_ratio": Param(0.1, "... while connected peers grew by at most this share ..."),
    "peerstore_growth_window": Param("1h", "... over this window ..."),
    "peerstore_growth_for": Param("30m", "... for this long."),
    # exporter health
    "target_down_for": Param("2m", "The exporter target failed scrapes for this long."),
    "node_down_for": Param("2m", "A node's introspection source was down or stale (libp2p_exporter_up 0) this long."),
    "snapshot_stale_window": Param("5m", "No new State snapshot from a node within this window ..."),
    "snapshot_stale_for": Param("1m", "... for this long (skips the first scrapes of a new node)."),
    "decode_errors_window": Param("10m", "Frame or decode errors counted over this window ..."),
    "decode_errors_threshold": Param(0, "... warn above this many."),
    "at_capacity_for": Param(
        "15m", "The exporter asked its nodes for a longer State interval than --interval (at capacity) this long."
    ),
    "retention_gaps_window": Param(
        "15m",
        "A node's States came further apart than its retention (libp2p_exporter_retention_gaps_total) within this "
        "window: its counters may miss connections.",
    ),
    "tls_expiry_warning_days": Param(
        14, "Warn when the exporter's own TLS certificate (--web.config.file) expires within this many days."
    ),
    # pubsub (gossipsub traces); D values are go-libp2p-pubsub's defaults
    "pubsub_d_lo": Param(5, "Gossipsub D_lo: warn when a node's mesh for a topic holds fewer peers ..."),
    "pubsub_mesh_for": Param("5m", "... for this long (mesh collapse)."),
    "pubsub_d": Param(6, "Gossipsub D, drawn on the dashboard."),
    "pubsub_d_hi": Param(12, "Gossipsub D_hi, drawn on the dashboard."),
    "pubsub_reject_share": Param(
        0.1, "Warn when this share of a node's validated messages on a topic were rejected ..."
    ),
    "pubsub_reject_window": Param("10m", "... rates over this window ..."),
    "pubsub_reject_for": Param("10m", "... for this long."),
    "pubsub_propagation_p99_seconds": Param(2, "Warn when p99 propagation delay on a topic exceeds this ..."),
    "pubsub_propagation_window": Param("10m", "... over this window ..."),
    "pubsub_propagation_for": Param("10m", "... for this long."),
}


def resolve(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults with ``overrides`` applied; unknown names are an error, numbers stay numbers."""
    values: dict[str, Any] = {name: p.default for name, p in PARAMS.items()}
    for name, raw in (overrides or {}).items():
        if name not in PARAMS:
            raise KeyError(f"unknown alert parameter {name!r}; known: {', '.join(sorted(PARAMS))}")
        default = PARAMS[name].default
        values[name] = type(default)(raw) if isinstance(default, (int, float)) and isinstance(raw, str) else raw
    base = str(values["runbook_base"])
    if base and not base.startswith(("http://", "https://")):
        raise ValueError(f"runbook_base must be an absolute http(s) URL, got {base!r}")
    return values


def load_overrides(path: Path | None, sets: list[str]) -> dict[str, Any]:
    """Overrides from a YAML mapping file and ``NAME=VALUE`` strings (the latter win)."""
    out: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of parameter names to values")
        out.update(data)
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def markdown_table() -> str:
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    rows += [f"| `{n}` | `{p.default}` | {p.doc} |" for n, p in PARAMS.items()]
    return "\n".join(rows)
