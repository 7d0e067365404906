"""Prometheus alert rules for peer churn, peers, the DHT and the exporter itself, built from ``params``.

The committed files under ``deploy/prometheus/rules/`` are this module's output with the default
parameters; ``python -m dashboards --set NAME=VALUE`` writes the same rules with other thresholds.
The expressions come from ``dashboards.promql``, as do the panels that draw the same quantities.
"""

from __future__ import annotations

from typing import Any

from dashboards.promql import (
    BY,
    churn_ratio,
    closes_per_minute,
    dht_routing_table,
    dht_shrink_level,
    job_selector,
    le_matcher,
    no_inbound,
    num,
    peer_drop_level,
    peers,
    peers_growth,
    peerstore_added,
    peerstore_growth,
    scrape_up,
    short_lived_share,
)

RUNBOOK = "deploy/README.md#{anchor}"
__all__ = ["alert_names", "groups", "le_matcher"]


def runbook_url(base: str, name: str) -> str | None:
    """The absolute runbook link for alert ``name``, or None without a base; a relative base is refused."""
    if not base:
        return None
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"runbook_base must be an absolute http(s) URL, got {base!r}")
    return f"{base.split('#')[0]}#{name.lower()}"


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


def groups(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rule groups by file stem, one group per concern (with ``runbook_url`` when a base is set)."""
    out = _groups(p)
    for group in out.values():
        for rule in group["rules"]:
            url = runbook_url(str(p.get("runbook_base") or ""), rule["alert"])
            if url:
                rule["annotations"]["runbook_url"] = url
    return out


def _groups(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rule groups by file stem, one group per concern."""
    j = job_selector(p["job"])
    by = BY
    peer_rules = [
        _alert(
            "Libp2pPeerCountLow",
            f"{peers(j)} < {num(p['peer_floor_warning'])}",
            p["peer_floor_warning_for"],
            "warning",
            "libp2p node {{ $labels.node }} has only {{ $value }} peers",
            f"Node {{{{ $labels.node }}}} ({{{{ $labels.instance }}}}) held fewer than {num(p['peer_floor_warning'])} "
            f"connected peers for {p['peer_floor_warning_for']}.",
        ),
        _alert(
            "Libp2pPeerCountCritical",
            f"{peers(j)} < {num(p['peer_floor_critical'])}",
            p["peer_floor_critical_for"],
            "critical",
            "libp2p node {{ $labels.node }} is nearly isolated ({{ $value }} peers)",
            f"Node {{{{ $labels.node }}}} ({{{{ $labels.instance }}}}) held fewer than {num(p['peer_floor_critical'])} "
            f"connected peers for {p['peer_floor_critical_for']}.",
        ),
        _alert(
            "Libp2pPeerCountDrop",
            f"{peers(j)}\n< {peer_drop_level(j, p['peer_drop_ratio'], p['peer_drop_window'])}",
            p["peer_drop_for"],
            "warning",
            "libp2p node {{ $labels.node }} lost many peers at once",
            f"Node {{{{ $labels.node }}}} has {{{{ $value }}}} peers, under {num(1 - float(p['peer_drop_ratio']))} "
            f"of its maximum over the last {p['peer_drop_window']}.",
        ),
    ]
    w = p["short_lived_window"]
    churn_rules = [
        _alert(
            "Libp2pHighPeerChurn",
            f"{churn_ratio(j, p['churn_window'])}\n> {num(p['churn_per_peer_per_minute'])}",
            p["churn_for"],
            "warning",
            "libp2p node {{ $labels.node }}: high peer churn",
            f"Node {{{{ $labels.node }}}}: peers connected plus disconnected per minute, per current peer, is "
            f'{{{{ $value | printf "%.2f" }}}} (threshold {num(p["churn_per_peer_per_minute"])}, '
            f"window {p['churn_window']}).",
        ),
        _alert(
            "Libp2pHighConnectionChurn",
            f"{churn_ratio(j, p['churn_window'], per='connections')}\n> {num(p['conn_churn_per_peer_per_minute'])}",
            p["churn_for"],
            "warning",
            "libp2p node {{ $labels.node }}: high connection churn",
            f"Node {{{{ $labels.node }}}}: connections opened plus closed per minute, per current peer, is "
            f'{{{{ $value | printf "%.2f" }}}} (threshold {num(p["conn_churn_per_peer_per_minute"])}, '
            f"window {p['churn_window']}).",
        ),
        _alert(
            "Libp2pShortLivedConnections",
            f"{short_lived_share(j, p['short_lived_seconds'], w)} > {num(p['short_lived_share'])}\n"
            f"and {closes_per_minute(j, w)} >= {num(p['short_lived_min_closes_per_minute'])}",
            p["short_lived_for"],
            "warning",
            "libp2p node {{ $labels.node }}: many short-lived connections",
            f"Node {{{{ $labels.node }}}}: {{{{ $value | humanizePercentage }}}} of the connections that closed in "
            f"the last {w} lived under {num(p['short_lived_seconds'])}s (threshold "
            f"{num(p['short_lived_share'])}).",
        ),
        _alert(
            "Libp2pNoInboundConnections",
            no_inbound(j, p["no_inbound_window"]),
            p["no_inbound_for"],
            "warning",
            "libp2p node {{ $labels.node }} gets no inbound connections",
            f"Node {{{{ $labels.node }}}} accepted no inbound connection in {p['no_inbound_window']}: it may be "
            "unreachable (NAT, firewall, wrong announced address).",
        ),
    ]
    dht_rules = [
        _alert(
            "Libp2pDhtRoutingTableShrinking",
            f"{dht_routing_table(j)}\n< {dht_shrink_level(j, p['dht_shrink_ratio'], p['dht_shrink_window'])}",
            p["dht_shrink_for"],
            "warning",
            "libp2p node {{ $labels.node }}: DHT routing table shrinking",
            f"Node {{{{ $labels.node }}}}'s routing table holds {{{{ $value }}}} peers, under "
            f"{num(1 - float(p['dht_shrink_ratio']))} of its maximum over {p['dht_shrink_window']}.",
        ),
    ]
    pw = p["peerstore_growth_window"]
    peerstore_rules = [
        _alert(
            "Libp2pPeerstoreGrowing",
            f"{peerstore_growth(j, pw)} > {num(1 + float(p['peerstore_growth_ratio']))}\n"
            f"and on ({by}) {peerstore_added(j, pw)} >= {num(p['peerstore_growth_min_peers'])}\n"
            f"and on ({by}) {peers_growth(j, pw)} <= {num(1 + float(p['peerstore_peers_growth_ratio']))}",
            p["peerstore_growth_for"],
            "warning",
            "libp2p node {{ $labels.node }}: peerstore keeps growing, connected peers do not",
            f'Node {{{{ $labels.node }}}}\'s peerstore holds {{{{ $value | printf "%.2f" }}}} times its smallest '
            f"size of the last {pw} while its connected peers grew by at most "
            f"{num(p['peerstore_peers_growth_ratio'])}: a peerstore that never forgets (a classic memory leak).",
        ),
    ]
    exporter_rules = [
        _alert(
            "Libp2pExporterTargetDown",
            f"{scrape_up(j)} == 0",
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
            f"[{p['decode_errors_window']}])) > {num(p['decode_errors_threshold'])}",
            "0m",
            "warning",
            "libp2p-exporter skips corrupt data from node {{ $labels.node }}",
            f'{{{{ $value | printf "%.0f" }}}} introspection segments from node {{{{ $labels.node }}}} failed '
            f"framing or protobuf decoding in {p['decode_errors_window']}.",
        ),
        _alert(
            "Libp2pExporterAtCapacity",
            f"max by (job, instance) (libp2p_exporter_ingest_interval_factor{{{j}}}) > 1",
            p["at_capacity_for"],
            "warning",
            "libp2p-exporter {{ $labels.instance }} is at capacity",
            "The exporter at {{ $labels.instance }} cannot take a State per --interval from every node: it "
            "asks them for {{ $value }} times the interval (gauges sparser; counters exact while States come "
            "within the retention of the nodes) since "
            f"{p['at_capacity_for']} or more. Add a shard (--total-shards).",
        ),
        _alert(
            "Libp2pExporterCountsIncomplete",
            f"sum by (job, instance) (increase(libp2p_exporter_retention_gaps_total{{{j}}}[{p['retention_gaps_window']}])) > 0",
            "0m",
            "warning",
            "libp2p-exporter {{ $labels.instance }}: some nodes' counters may be short",
            "The exporter at {{ $labels.instance }} accepted States further apart than the retention of their "
            'node {{ $value | printf "%.0f" }} times in '
            f"{p['retention_gaps_window']}: connections that opened and closed in between "
            "were never listed, so the connection counters and histograms of those nodes may miss them. Either it is "
            "past its limit even at the longest interval it may ask for (add a shard, --total-shards), or a session "
            "was down for longer than the retention (see Libp2pExporterNodeDown).",
        ),
        _alert(
            "Libp2pExporterTLSCertificateExpiringSoon",
            f"(libp2p_exporter_tls_certificate_expiry_timestamp_seconds{{{j}}} - time()) / 86400\n"
            f"< {num(p['tls_expiry_warning_days'])}\n"
            f"and libp2p_exporter_tls_certificate_expiry_timestamp_seconds{{{j}}} - time() > 0",
            "0m",
            "warning",
            "libp2p-exporter {{ $labels.instance }}: TLS certificate expires soon",
            f"The TLS certificate {{{{ $labels.file }}}} of the exporter at {{{{ $labels.instance }}}} expires in "
            f'{{{{ $value | printf "%.1f" }}}} days (warning from {num(p["tls_expiry_warning_days"])} days): '
            "renew it before scrapes fail.",
        ),
        _alert(
            "Libp2pExporterTLSCertificateExpired",
            f"time() - libp2p_exporter_tls_certificate_expiry_timestamp_seconds{{{j}}} >= 0",
            "0m",
            "critical",
            "libp2p-exporter {{ $labels.instance }}: TLS certificate has expired",
            "The TLS certificate {{ $labels.file }} of the exporter at {{ $labels.instance }} expired "
            "{{ $value | humanizeDuration }} ago: TLS clients (Prometheus) refuse it.",
        ),
    ]
    return {
        "libp2p-peers": {"name": "libp2p-peers", "rules": peer_rules},
        "libp2p-churn": {"name": "libp2p-churn", "rules": churn_rules},
        "libp2p-dht": {"name": "libp2p-dht", "rules": dht_rules},
        "libp2p-peerstore": {"name": "libp2p-peerstore", "rules": peerstore_rules},
        "libp2p-exporter": {"name": "libp2p-exporter", "rules": exporter_rules},
        "libp2p-pubsub": _pubsub_rules(p),
    }


def _pubsub_rules(p: dict[str, Any]) -> dict[str, Any]:
    from dashboards.pubsub import rules  # gossipsub traces: its rules and PromQL in one module

    return rules(p)


def alert_names(p: dict[str, Any]) -> list[str]:
    return [r["alert"] for g in groups(p).values() for r in g["rules"]]
