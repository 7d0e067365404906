"""The Connections (swarm) dashboard: connections by transport, direction, security and muxer; lifetimes and setup time."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import NODE_SELECTOR, RATE_WINDOW, Query, Row, TimeSeries, dashboard
from dashboards.promql import CONNECTION_DURATION, CONNECTIONS_CLOSED, CONNECTIONS_OPENED, per_minute, quantile

ACTIVE = f'{NODE_SELECTOR}, status="active"'


def _median_and_p90(family: str, window: str | None) -> list[Query]:
    """p50 and p90 of a histogram family, classic or native (``promql.quantile``)."""
    return [Query(quantile(q, family, NODE_SELECTOR, window), f"p{round(q * 100)}") for q in (0.5, 0.9)]


def connections(p: dict[str, Any]) -> dm.Dashboard:
    open_now = [
        TimeSeries(
            "Open connections by transport",
            "Active connections in the latest snapshot per transport (tcp, quic-v1, ws, webtransport, ...; unknown values fold into other).",
            "none",
            [Query(f"sum by (transport) (libp2p_connections{{{ACTIVE}}})", "{{transport}}")],
            stack=True,
            min=0,
        ),
        TimeSeries(
            "Open connections by direction",
            "Active connections we dialled (outbound) or accepted (inbound). No inbound at all points at reachability trouble.",
            "none",
            [Query(f"sum by (dir) (libp2p_connections{{{ACTIVE}}})", "{{dir}}")],
            stack=True,
            min=0,
        ),
        TimeSeries(
            "Connections by status",
            "Connections listed in the snapshot by status: closed and error ones stay listed for the retention period before they vanish.",
            "none",
            [Query(f"sum by (status) (libp2p_connections{{{NODE_SELECTOR}}})", "{{status}}")],
            min=0,
        ),
        TimeSeries(
            "Security and muxer",
            "Active connections per security protocol and stream muxer (QUIC has its own muxer and shows unknown).",
            "none",
            [Query(f"sum by (security, muxer) (libp2p_connections{{{ACTIVE}}})", "{{security}} / {{muxer}}")],
            min=0,
        ),
    ]
    opened_and_closed = [
        TimeSeries(
            "Opened per minute by transport",
            "New connections per minute per transport and direction.",
            "cpm",
            [
                Query(
                    per_minute(CONNECTIONS_OPENED, NODE_SELECTOR, RATE_WINDOW, by="transport, dir"),
                    "{{transport}} {{dir}}",
                )
            ],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Closed per minute by transport",
            "Connections closing per minute per transport and direction (a connection that vanished from the snapshot counts once).",
            "cpm",
            [
                Query(
                    per_minute(CONNECTIONS_CLOSED, NODE_SELECTOR, RATE_WINDOW, by="transport, dir"),
                    "{{transport}} {{dir}}",
                )
            ],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Opened per minute by IP version",
            "New connections per minute over IPv4 and IPv6.",
            "cpm",
            [Query(per_minute(CONNECTIONS_OPENED, NODE_SELECTOR, RATE_WINDOW, by="ip_version"), "{{ip_version}}")],
            min=0,
            width=8,
        ),
    ]
    lifetime_and_latency = [
        TimeSeries(
            "Connection lifetime",
            "Median and 90th percentile lifetime of the connections that closed, from the duration histogram (buckets 1/16 s × 2^n; 1/16 s × 4^n and 8 s under the lean histogram profile).",
            "s",
            _median_and_p90(CONNECTION_DURATION, RATE_WINDOW),
            min=0,
        ),
        TimeSeries(
            "Handshake latency",
            "Time from opening a connection to a finished security and muxer upgrade (open_ts to upgraded_ts), p50 and p90.",
            "s",
            _median_and_p90("libp2p_swarm_handshake_latency_seconds", RATE_WINDOW),
            min=0,
        ),
        TimeSeries(
            "Connection latency now",
            "Median and p90 round-trip latency the node measured on its open connections (a point-in-time distribution, no rate).",
            "s",
            _median_and_p90("libp2p_connection_latency_seconds", None),
            min=0,
        ),
        TimeSeries(
            "Connection age now",
            "Median and p90 age of the open connections in the latest snapshot: a falling median means the population is being replaced.",
            "s",
            _median_and_p90("libp2p_connection_age_seconds", None),
            min=0,
        ),
    ]
    return dashboard(
        "libp2p-connections",
        "libp2p / Connections (swarm)",
        "Connections by transport, direction, security and muxer; how long they live and how fast they set up.",
        [
            Row("Open connections", open_now),
            Row("Opened and closed", opened_and_closed),
            Row("Lifetime and latency", lifetime_and_latency),
        ],
    )
