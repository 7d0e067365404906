"""The Traffic dashboard: bytes and packets per node, by transport and by protocol."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import NODE_SELECTOR, RATE_WINDOW, TIME_RANGE, Query, RangeTotals, Row, TimeSeries, dashboard


def traffic(p: dict[str, Any]) -> dm.Dashboard:
    per_node = [
        TimeSeries(
            "Node traffic",
            "Bytes per second in and out per node, from the node's whole-node cumulative counters.",
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
            "Packets",
            "Packets per second in and out per node.",
            "pps",
            [
                Query(
                    f"sum by (node, direction) (rate(libp2p_traffic_packets_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                    "{{node}} {{direction}}",
                )
            ],
            min=0,
        ),
        TimeSeries(
            "Reported bandwidth",
            "The instantaneous bandwidth the node itself reports (inst_bw), which smooths differently from the rate of the byte counters.",
            "Bps",
            [
                Query(
                    f"sum by (node, direction) (libp2p_bandwidth_bytes_per_second{{{NODE_SELECTOR}}})",
                    "{{node}} {{direction}}",
                )
            ],
            min=0,
        ),
        RangeTotals(
            "Bytes in the time range",
            "Total bytes in and out over the dashboard's time range.",
            "bytes",
            [
                Query(
                    f"sum by (direction) (increase(libp2p_traffic_bytes_total{{{NODE_SELECTOR}}}[{TIME_RANGE}]))",
                    "{{direction}}",
                )
            ],
        ),
    ]
    split = [
        TimeSeries(
            "Traffic by transport",
            "Bytes per second per transport and direction, from per-connection traffic.",
            "Bps",
            [
                Query(
                    f"sum by (transport, direction) (rate(libp2p_transport_traffic_bytes_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                    "{{transport}} {{direction}}",
                )
            ],
            min=0,
        ),
        TimeSeries(
            "Traffic by protocol (top 10)",
            "The ten busiest protocol and direction pairs, bytes per second.",
            "Bps",
            [
                Query(
                    f"topk(10, sum by (protocol, direction) (rate(libp2p_protocol_traffic_bytes_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}])))",
                    "{{protocol}} {{direction}}",
                )
            ],
            min=0,
        ),
    ]
    return dashboard(
        "libp2p-traffic",
        "libp2p / Traffic",
        "Bytes and packets in and out of each node, and how they split by transport and protocol.",
        [Row("Per node", per_node), Row("By transport and protocol", split)],
    )
