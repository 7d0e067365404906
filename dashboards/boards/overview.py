"""The Overview dashboard: every observed node at a glance (peers, connections, streams, traffic, churn)."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    NODE_SELECTOR,
    PER_MINUTE_PER_PEER,
    RATE_WINDOW,
    Query,
    Row,
    Stat,
    Table,
    TimeSeries,
    dashboard,
)
from dashboards.promql import CONNECTIONS_CLOSED, CONNECTIONS_OPENED, churn_ratio, peers, per_minute


def overview(p: dict[str, Any]) -> dm.Dashboard:
    now = [
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
            [Query(f"sum({peers(NODE_SELECTOR)})", "peers")],
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
            "Peers connected plus disconnected per minute, per current peer, on the busiest node. Above the alert threshold (red) for long, Libp2pHighPeerChurn fires.",
            PER_MINUTE_PER_PEER,
            [Query(f"max({churn_ratio(NODE_SELECTOR, RATE_WINDOW)})", "churn")],
            width=4,
            height=4,
            thresholds=[(float(p["churn_per_peer_per_minute"]), "red")],
        ),
    ]
    over_time = [
        TimeSeries(
            "Peers per node",
            "Connected peers of each node over time. Sudden steps down are peer-count drops; a slow slide under the floor is isolation.",
            "none",
            [Query(peers(NODE_SELECTOR), "{{node}}")],
            min=0,
            width=8,
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
            width=8,
        ),
        TimeSeries(
            "Connections opened and closed",
            "Connections per minute the nodes opened and closed. The two lines track each other when the population is stable.",
            "cpm",
            [
                Query(per_minute(CONNECTIONS_OPENED, NODE_SELECTOR, RATE_WINDOW, by="node"), "{{node}} opened"),
                Query(per_minute(CONNECTIONS_CLOSED, NODE_SELECTOR, RATE_WINDOW, by="node"), "{{node}} closed"),
            ],
            min=0,
            width=8,
        ),
    ]
    nodes = Table(
        "Nodes",
        "Every node's implementation, version, platform and peer id as its Runtime message reports them, and the exporter instance that watches it.",
        "none",
        [Query(f"libp2p_node_info{{{NODE_SELECTOR}}}")],
        width=24,
        columns={
            "node": "Node",
            "implementation": "Implementation",
            "version": "Version",
            "platform": "Platform",
            "peer_id": "Peer ID",
            "instance": "Exporter instance",
            "job": "Job",
        },
    )
    return dashboard(
        "libp2p-overview",
        "libp2p / Overview",
        "The state of every observed libp2p node at a glance: peers, connections, streams, traffic, churn.",
        [Row("Now", now), Row("Over time", over_time), Row("Nodes", [nodes])],
    )
