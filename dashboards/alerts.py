"""Prometheus alert rules for peer churn, peers, the DHT and the exporter itself, built from ``params``.

The committed files under ``deploy/prometheus/rules/`` are this module's output with the default
parameters; ``python -m dashboards --set NAME=VALUE`` writes the same rules with other thresholds.
"""

from __future__ import annotations

from typing import Any

BY = "job, instance, node"
RUNBOOK = "deploy/README.md#{anchor}"


def _num(v: Any) -> str:
    return f"{float(v):g}"


def le_matcher(seconds: Any) -> str:
    """A ``le`` matcher that holds whether the bound was written ``8`` or ``8.0``."""
    text = _num(seconds)
    return f'le=~"{text}(\\\\.0)?"' if "." not in text and "e" not in text else f'le="{text}"'


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ and for_ not in ("0", "0s", "0m"):
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook": RUNBOOK.format(anchor=name.lower()),
    }
    return rule


def churn_ratio_expr(p: dict[str, Any], *, per: str = "peers") -> str:
    """(connects + disconnects per minute) / current peers: the dashboards draw the same quantity."""
    j = f'job=~"{p["job"]}"'
    w = p["churn_window"]
    if per == "peers":
        a, b = "libp2p_peers_connected_total", "libp2p_peers_disconnected_total"
    else:
        a, b = "libp2p_swarm_connections_opened_total", "libp2p_swarm_connections_closed_total"
    return (
        f"(\n  sum by ({BY}) (rate({a}{{{j}}}[{w}]))\n+ sum by ({BY}) (rate({b}{{{j}}}[{w}]))\n) * 60\n"
        f"/ clamp_min(sum by ({BY}) (libp2p_peers{{{j}}}), 1)"
    )


def no_inbound_expr(p: dict[str, Any]) -> str:
    """No inbound connection opened in the window, including a node that never had one.

    The exporter creates a ``dir="inbound"`` series only when the first inbound connection opens, so
    ``increase(...) == 0`` alone never fires for a node that was unreachable from the start (the NAT
    case). The second branch covers it: a node watched for the whole window (it had ``libp2p_peers``
    a window ago) that is still watched now and has no inbound series at all.
    """
    j = f'job=~"{p["job"]}"'
    w = p["no_inbound_window"]
    inbound = f'libp2p_swarm_connections_opened_total{{{j}, dir="inbound"}}'
    return (
        f"sum by ({BY}) (increase({inbound}[{w}])) == 0\n"
        f"or (\n  sum by ({BY}) (libp2p_peers{{{j}}} offset {w}) * 0\n"
        f"  and on ({BY}) sum by ({BY}) (libp2p_peers{{{j}}})\n"
        f"  unless on ({BY}) sum by ({BY}) ({inbound})\n)"
    )


def groups(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rule groups by file stem, one group per concern."""
    j = f'job=~"{p["job"]}"'
    by = BY
    peers = [
        _alert(
            "Libp2pPeerCountLow",
            f"libp2p_peers{{{j}}} < {_num(p['peer_floor_warning'])}",
            p["peer_floor_warning_for"],
            "warning",
            "libp2p node {{ $labels.node }} has only {{ $value }} peers",
            f"Node {{{{ $labels.node }}}} ({{{{ $labels.instance }}}}) held fewer than {_num(p['peer_floor_warning'])} "
            f"connected peers for {p['peer_floor_warning_for']}.",
        ),
        _alert(
            "Libp2pPeerCountCritical",
            f"libp2p_peers{{{j}}} < {_num(p['peer_floor_critical'])}",
            p["peer_floor_critical_for"],
            "critical",
            "libp2p node {{ $labels.node }} is nearly isolated ({{ $value }} peers)",
            f"Node {{{{ $labels.node }}}} ({{{{ $labels.instance }}}}) held fewer than {_num(p['peer_floor_critical'])} "
            f"connected peers for {p['peer_floor_critical_for']}.",
        ),
        _alert(
            "Libp2pPeerCountDrop",
            f"libp2p_peers{{{j}}}\n< {_num(1 - float(p['peer_drop_ratio']))} * "
            f"max_over_time(libp2p_peers{{{j}}}[{p['peer_drop_window']}])",
            p["peer_drop_for"],
            "warning",
            "libp2p node {{ $labels.node }} lost many peers at once",
            f"Node {{{{ $labels.node }}}} has {{{{ $value }}}} peers, under {_num(1 - float(p['peer_drop_ratio']))} "
            f"of its maximum over the last {p['peer_drop_window']}.",
        ),
    ]
    bucket = le_matcher(p["short_lived_seconds"])
    w = p["short_lived_window"]
    churn = [
        _alert(
            "Libp2pHighPeerChurn",
            f"{churn_ratio_expr(p)}\n> {_num(p['churn_per_peer_per_minute'])}",
            p["churn_for"],
            "warning",
            "libp2p node {{ $labels.node }}: high peer churn",
            f"Node {{{{ $labels.node }}}}: peers connected plus disconnected per minute, per current peer, is "
            f'{{{{ $value | printf "%.2f" }}}} (threshold {_num(p["churn_per_peer_per_minute"])}, '
            f"window {p['churn_window']}).",
        ),
        _alert(
            "Libp2pHighConnectionChurn",
            f"{churn_ratio_expr(p, per='connections')}\n> {_num(p['conn_churn_per_peer_per_minute'])}",
            p["churn_for"],
            "warning",
            "libp2p node {{ $labels.node }}: high connection churn",
            f"Node {{{{ $labels.node }}}}: connections opened plus closed per minute, per current peer, is "
            f'{{{{ $value | printf "%.2f" }}}} (threshold {_num(p["conn_churn_per_peer_per_minute"])}, '
            f"window {p['churn_window']}).",
        ),
        _alert(
            "Libp2pShortLivedConnections",
            f"(\n  sum by ({by}) (rate(libp2p_swarm_connection_duration_seconds_bucket{{{j}, {bucket}}}[{w}]))\n"
            f"/ sum by ({by}) (rate(libp2p_swarm_connection_duration_seconds_count{{{j}}}[{w}]))\n"
            f") > {_num(p['short_lived_share'])}\n"
            f"and sum by ({by}) (rate(libp2p_swarm_connection_duration_seconds_count{{{j}}}[{w}])) * 60 "
            f">= {_num(p['short_lived_min_closes_per_minute'])}",
            p["short_lived_for"],
            "warning",
            "libp2p node {{ $labels.node }}: many short-lived connections",
            f"Node {{{{ $labels.node }}}}: {{{{ $value | humanizePercentage }}}} of the connections that closed in "
            f"the last {w} lived under {_num(p['short_lived_seconds'])}s (threshold "
            f"{_num(p['short_lived_share'])}).",
        ),
        _alert(
            "Libp2pNoInboundConnections",
            no_inbound_expr(p),
            p["no_inbound_for"],
            "warning",
            "libp2p node {{ $labels.node }} gets no inbound connections",
            f"Node {{{{ $labels.node }}}} accepted no inbound connection in {p['no_inbound_window']}: it may be "
            "unreachable (NAT, firewall, wrong announced address).",
        ),
    ]
    dht_peers = f'sum by ({by}) (libp2p_dht_peers{{{j}, status=~"active|missing"}})'
    dht = [
        _alert(
            "Libp2pDhtRoutingTableShrinking",
            f"{dht_peers}\n< {_num(1 - float(p['dht_shrink_ratio']))} * "
            f"max_over_time({dht_peers}[{p['dht_shrink_window']}:])",
            p["dht_shrink_for"],
            "warning",
            "libp2p node {{ $labels.node }}: DHT routing table shrinking",
            f"Node {{{{ $labels.node }}}}'s routing table holds {{{{ $value }}}} peers, under "
            f"{_num(1 - float(p['dht_shrink_ratio']))} of its maximum over {p['dht_shrink_window']}.",
        ),
    ]
    exporter = [
        _alert(
            "Libp2pExporterTargetDown",
            f"up{{{j}}} == 0",
            p["target_down_for"],
            "critical",
            "libp2p-exporter target {{ $labels.instance }} is down",
            f"Prometheus failed to scrape {{{{ $labels.instance }}}} (job {{{{ $labels.job }}}}) for "
            f"{p['target_down_for']}: no libp2p metrics from it.",
        ),
        _alert(
            "Libp2pExporterNodeDown",
            f"libp2p_exporter_up{{{j}}} == 0",
            p["node_down_for"],
            "warning",
            "libp2p-exporter lost node {{ $labels.node }}",
            f"The exporter at {{{{ $labels.instance }}}} has no current data for node {{{{ $labels.node }}}} "
            f"(its introspection source is down or stale) for {p['node_down_for']}.",
        ),
        _alert(
            "Libp2pExporterSnapshotsStale",
            f"changes(libp2p_exporter_last_snapshot_timestamp_seconds{{{j}}}[{p['snapshot_stale_window']}]) == 0",
            p["snapshot_stale_for"],
            "warning",
            "no new snapshot from libp2p node {{ $labels.node }}",
            f"The last State snapshot of node {{{{ $labels.node }}}} did not change in {p['snapshot_stale_window']}: "
            "its introspection stream is stuck.",
        ),
        _alert(
            "Libp2pExporterDecodeErrors",
            f"sum by ({by}) (increase(libp2p_exporter_segment_errors_total{{{j}}}"
            f"[{p['decode_errors_window']}])) > {_num(p['decode_errors_threshold'])}",
            "0m",
            "warning",
            "libp2p-exporter skips corrupt data from node {{ $labels.node }}",
            f'{{{{ $value | printf "%.0f" }}}} introspection segments from node {{{{ $labels.node }}}} failed '
            f"framing or protobuf decoding in {p['decode_errors_window']}.",
        ),
    ]
    return {
        "libp2p-peers": {"name": "libp2p-peers", "rules": peers},
        "libp2p-churn": {"name": "libp2p-churn", "rules": churn},
        "libp2p-dht": {"name": "libp2p-dht", "rules": dht},
        "libp2p-exporter": {"name": "libp2p-exporter", "rules": exporter},
        "libp2p-pubsub": _pubsub_rules(p),
    }


def _pubsub_rules(p: dict[str, Any]) -> dict[str, Any]:
    from dashboards.pubsub import rules  # its own module, next to its dashboard

    return rules(p)


def alert_names(p: dict[str, Any]) -> list[str]:
    return [r["alert"] for g in groups(p).values() for r in g["rules"]]
