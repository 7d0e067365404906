"""The Streams and protocols dashboard: streams per protocol, their lifetime and traffic."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import NODE_SELECTOR, RATE_WINDOW, Query, Row, TimeSeries, dashboard
from dashboards.promql import quantile

ACTIVE = f'{NODE_SELECTOR}, status="active"'


def streams(p: dict[str, Any]) -> dm.Dashboard:
    open_now = [
        TimeSeries(
            "Open streams by protocol",
            "Active streams in the latest snapshot per protocol id.",
            "none",
            [Query(f"sum by (protocol) (libp2p_streams{{{ACTIVE}}})", "{{protocol}}")],
            stack=True,
            min=0,
        ),
        TimeSeries(
            "Open streams by direction",
            "Active streams we opened (outbound) or the remote opened (inbound).",
            "none",
            [Query(f"sum by (dir) (libp2p_streams{{{ACTIVE}}})", "{{dir}}")],
            stack=True,
            min=0,
        ),
    ]
    opened_and_closed = [
        TimeSeries(
            "Streams opened per second",
            "New streams per second per protocol.",
            "ops",
            [
                Query(
                    f"sum by (protocol) (rate(libp2p_streams_opened_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                    "{{protocol}}",
                )
            ],
            min=0,
        ),
        TimeSeries(
            "Streams closed per second",
            "Streams closing per second per protocol (including streams of a connection that closed).",
            "ops",
            [
                Query(
                    f"sum by (protocol) (rate(libp2p_streams_closed_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                    "{{protocol}}",
                )
            ],
            min=0,
        ),
    ]
    lifetime_and_traffic = [
        TimeSeries(
            "Stream lifetime p90",
            "90th percentile lifetime of the streams that closed, per protocol.",
            "s",
            [
                Query(
                    quantile(0.9, "libp2p_stream_duration_seconds", NODE_SELECTOR, RATE_WINDOW, by="protocol"),
                    "{{protocol}}",
                )
            ],
            min=0,
        ),
        TimeSeries(
            "Protocol traffic",
            "Bytes per second per protocol and direction, summed from per-stream traffic.",
            "Bps",
            [
                Query(
                    f"sum by (protocol, direction) (rate(libp2p_protocol_traffic_bytes_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                    "{{protocol}} {{direction}}",
                )
            ],
            min=0,
        ),
    ]
    return dashboard(
        "libp2p-streams",
        "libp2p / Streams and protocols",
        "Streams per protocol (allow-listed protocol ids, the rest fold into other), their lifetime and traffic.",
        [
            Row("Open streams", open_now),
            Row("Opened and closed", opened_and_closed),
            Row("Lifetime and traffic", lifetime_and_traffic),
        ],
    )
