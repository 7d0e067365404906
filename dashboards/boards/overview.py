"""The Overview dashboard: every observed node at a glance (peers, connections, streams, traffic, churn)."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import NODE_SELECTOR, RATE_WINDOW, Query, Stat, Table, TimeSeries, dashboard
from dashboards.promql import churn_ratio


def overview(p: dict[str, Any]) -> dm.Dashboard:
    return dashboard(
        "libp2p-overview",
        "libp2p / Overview",
        "The state of every observed libp2p node at a glance: peers, connections, streams, traffic, churn.",
        [
            Stat(
                "Nodes up",
                "Observed nodes whose introspection data is current (libp2p_exporter_up). Fewer than expected: see the Exporter health dashboard.",
                "none",
                [Query(f"sum(libp2p_exporter_up{{{NODE_SELECTOR}}})", "nodes up")],
                width=4,
                height=4,
            ),
            Stat(
                "Peers",
                "Distinct peers with at least one open connection, summed over the selected nodes.",
                "none",
                [Query(f"sum(libp2p_peers{{{NODE_SELECTOR}}})", "peers")],
                width=4,
                height=4,
            ),
            Stat(
                "Open connections",
                "Connections in status active in the latest snapshot. One peer may hold several.",
                "none",
                [Query(f'sum(libp2p_connections{{{NODE_SELECTOR}, status="active"}})', "connections")],
                width=4,
                height=4,
            ),
            Stat(
                "Open streams",
                "Streams in status active in the latest snapshot, all protocols.",
                "none",
                [Query(f'sum(libp2p_streams{{{NODE_SELECTOR}, status="active"}})', "streams")],
                width=4,
                height=4,
            ),
            Stat(
                "Bandwidth",
                "Instantaneous bandwidth the nodes report (in plus out), bytes per second.",
                "Bps",
                [Query(f"sum(libp2p_bandwidth_bytes_per_second{{{NODE_SELECTOR}}})", "bandwidth")],
                width=4,
                height=4,
            ),
            Stat(
                "Peer churn",
                "Peers connected plus disconnected per minute, per current peer. Above the alert threshold (red) for long, Libp2pHighPeerChurn fires.",
                "none",
                [Query(f"max({churn_ratio(NODE_SELECTOR, RATE_WINDOW)})", "churn")],
                width=4,
                height=4,
                thresholds=[(float(p["churn_per_peer_per_minute"]), "red")],
            ),
            TimeSeries(
                "Peers per node",
                "Connected peers of each node over time. Sudden steps down are peer-count drops; a slow slide under the floor is isolation.",
                "none",
                [Query(f"libp2p_peers{{{NODE_SELECTOR}}}", "{{node}}")],
                min=0,
            ),
            TimeSeries(
                "Traffic",
                "Bytes per second in and out of each node, from the node's cumulative traffic counters.",
                "Bps",
                [
                    Query(
                        f"sum by (node, direction) (rate(libp2p_traffic_bytes_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                        "{{node}} {{direction}}",
                    )
                ],
                min=0,
            ),
            TimeSeries(
                "Connections opened and closed",
                "Connections per second the nodes opened and closed. The two lines track each other when the population is stable.",
                "cps",
                [
                    Query(
                        f"sum by (node) (rate(libp2p_swarm_connections_opened_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                        "{{node}} opened",
                    ),
                    Query(
                        f"sum by (node) (rate(libp2p_swarm_connections_closed_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                        "{{node}} closed",
                    ),
                ],
                min=0,
            ),
            Table(
                "Nodes",
                "Every node's implementation, version and platform as its Runtime message reports them (value is always 1).",
                "none",
                [Query(f"libp2p_node_info{{{NODE_SELECTOR}}}", "")],
            ),
        ],
    )
