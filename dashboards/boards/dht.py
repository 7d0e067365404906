"""The DHT dashboard: the Kademlia routing table and the queries a node serves and sends."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import NODE_SELECTOR, RATE_WINDOW, Query, Row, Stat, TimeSeries, dashboard
from dashboards.promql import dht_routing_table, dht_shrink_level, quantile


def dht(p: dict[str, Any]) -> dm.Dashboard:
    parameters = [
        Stat(
            "DHT enabled",
            "1 when the node reports an enabled DHT, per node (minimum over the selection).",
            "bool",
            [Query(f"min(libp2p_dht_enabled{{{NODE_SELECTOR}}})", "enabled")],
            width=6,
            height=4,
        ),
        Stat(
            "Bucket size k",
            "The routing table's bucket size parameter.",
            "none",
            [Query(f"max(libp2p_dht_k{{{NODE_SELECTOR}}})", "k")],
            width=6,
            height=4,
        ),
        Stat(
            "Concurrency alpha",
            "Query concurrency parameter.",
            "none",
            [Query(f"max(libp2p_dht_alpha{{{NODE_SELECTOR}}})", "alpha")],
            width=6,
            height=4,
        ),
        Stat(
            "Buckets",
            "Buckets in the routing table (per node, maximum over the selection).",
            "none",
            [Query(f"max(libp2p_dht_buckets{{{NODE_SELECTOR}}})", "buckets")],
            width=6,
            height=4,
        ),
    ]
    routing_table = [
        TimeSeries(
            "Routing table size",
            "Peers in a bucket (active or missing) per node; the dashed line is the Libp2pDhtRoutingTableShrinking threshold, a share of the recent maximum.",
            "none",
            [
                Query(dht_routing_table(NODE_SELECTOR), "{{node}}"),
                Query(
                    dht_shrink_level(NODE_SELECTOR, p["dht_shrink_ratio"], p["dht_shrink_window"]),
                    "{{node}} alert threshold",
                ),
            ],
            min=0,
        ),
        TimeSeries(
            "Peers by status",
            "Routing-table peers by status: active (connected), missing (in a bucket, not connected), candidate (waiting for room), rejected.",
            "none",
            [Query(f"sum by (status) (libp2p_dht_peers{{{NODE_SELECTOR}}})", "{{status}}")],
            stack=True,
            min=0,
        ),
        TimeSeries(
            "Peers per bucket",
            "Peers in each bucket by common prefix length (cpl): low cpl buckets are the far, full ones.",
            "none",
            [
                Query(
                    f'sum by (cpl) (libp2p_dht_bucket_peers{{{NODE_SELECTOR}, status=~"active|missing"}})',
                    "cpl {{cpl}}",
                )
            ],
            stack=True,
            min=0,
        ),
        TimeSeries(
            "Routing table churn",
            "Peers added to or removed from buckets, and status changes, per second.",
            "ops",
            [
                Query(
                    f"sum by (action) (rate(libp2p_dht_routing_table_updates_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                    "{{action}}",
                )
            ],
            min=0,
        ),
    ]
    queries = [
        TimeSeries(
            "Queries per second",
            "DHT queries per second by direction and result (success, error, timeout), from the node's cumulative gauges.",
            "reqps",
            [
                Query(
                    f"sum by (direction, result) (rate(libp2p_dht_queries_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                    "{{direction}} {{result}}",
                )
            ],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Query success ratio",
            "Share of queries that succeeded, per direction. Falling means unreachable or misbehaving peers.",
            "percentunit",
            [
                Query(
                    f'sum by (direction) (rate(libp2p_dht_queries_total{{{NODE_SELECTOR}, result="success"}}[{RATE_WINDOW}])) / sum by (direction) (rate(libp2p_dht_queries_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))',
                    "{{direction}}",
                )
            ],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Query duration p90",
            "90th percentile query time by direction, from the query events' totalTimeMs.",
            "s",
            [
                Query(
                    quantile(0.9, "libp2p_dht_query_duration_seconds", NODE_SELECTOR, RATE_WINDOW, by="direction"),
                    "{{direction}}",
                )
            ],
            min=0,
            width=8,
        ),
    ]
    return dashboard(
        "libp2p-dht",
        "libp2p / DHT",
        "The Kademlia routing table (buckets, peers by status, churn) and the queries the node serves and sends.",
        [Row("Parameters", parameters), Row("Routing table", routing_table), Row("Queries", queries)],
    )
