"""The Connections (swarm) dashboard: connections by transport, direction, security and muxer; lifetimes and setup time."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import NODE_SELECTOR, RATE_WINDOW, Query, TimeSeries, dashboard


def connections(p: dict[str, Any]) -> dm.Dashboard:
    h = "libp2p_swarm_connection_duration_seconds_bucket"
    return dashboard(
        "libp2p-connections",
        "libp2p / Connections (swarm)",
        "Connections by transport, direction, security and muxer; how long they live and how fast they set up.",
        [
            TimeSeries(
                "Open connections by transport",
                "Active connections in the latest snapshot per transport (tcp, quic-v1, ws, webtransport, ...; unknown values fold into other).",
                "none",
                [
                    Query(
                        f'sum by (transport) (libp2p_connections{{{NODE_SELECTOR}, status="active"}})', "{{transport}}"
                    )
                ],
                stack=True,
                min=0,
            ),
            TimeSeries(
                "Open connections by direction",
                "Active connections we dialled (outbound) or accepted (inbound). No inbound at all points at reachability trouble.",
                "none",
                [Query(f'sum by (dir) (libp2p_connections{{{NODE_SELECTOR}, status="active"}})', "{{dir}}")],
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
                [
                    Query(
                        f'sum by (security, muxer) (libp2p_connections{{{NODE_SELECTOR}, status="active"}})',
                        "{{security}} / {{muxer}}",
                    )
                ],
                min=0,
            ),
            TimeSeries(
                "Opened per second by transport",
                "New connections per second per transport and direction.",
                "cps",
                [
                    Query(
                        f"sum by (transport, dir) (rate(libp2p_swarm_connections_opened_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                        "{{transport}} {{dir}}",
                    )
                ],
                min=0,
            ),
            TimeSeries(
                "Closed per second by transport",
                "Connections closing per second per transport and direction (a connection that vanished from the snapshot counts once).",
                "cps",
                [
                    Query(
                        f"sum by (transport, dir) (rate(libp2p_swarm_connections_closed_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                        "{{transport}} {{dir}}",
                    )
                ],
                min=0,
            ),
            TimeSeries(
                "Connection lifetime",
                "Median and 90th percentile lifetime of the connections that closed, from the duration histogram (buckets 1/16 s × 2^n).",
                "s",
                [
                    Query(f"histogram_quantile(0.5, sum by (le) (rate({h}{{{NODE_SELECTOR}}}[{RATE_WINDOW}])))", "p50"),
                    Query(f"histogram_quantile(0.9, sum by (le) (rate({h}{{{NODE_SELECTOR}}}[{RATE_WINDOW}])))", "p90"),
                ],
                min=0,
            ),
            TimeSeries(
                "Handshake latency",
                "Time from opening a connection to a finished security and muxer upgrade (open_ts to upgraded_ts), p50 and p90.",
                "s",
                [
                    Query(
                        f"histogram_quantile(0.5, sum by (le) (rate(libp2p_swarm_handshake_latency_seconds_bucket{{{NODE_SELECTOR}}}[{RATE_WINDOW}])))",
                        "p50",
                    ),
                    Query(
                        f"histogram_quantile(0.9, sum by (le) (rate(libp2p_swarm_handshake_latency_seconds_bucket{{{NODE_SELECTOR}}}[{RATE_WINDOW}])))",
                        "p90",
                    ),
                ],
                min=0,
            ),
            TimeSeries(
                "Connection latency now",
                "Median and p90 round-trip latency the node measured on its open connections (a point-in-time distribution, no rate).",
                "s",
                [
                    Query(
                        f"histogram_quantile(0.5, sum by (le) (libp2p_connection_latency_seconds_bucket{{{NODE_SELECTOR}}}))",
                        "p50",
                    ),
                    Query(
                        f"histogram_quantile(0.9, sum by (le) (libp2p_connection_latency_seconds_bucket{{{NODE_SELECTOR}}}))",
                        "p90",
                    ),
                ],
                min=0,
            ),
            TimeSeries(
                "Connection age now",
                "Median and p90 age of the open connections in the latest snapshot: a falling median means the population is being replaced.",
                "s",
                [
                    Query(
                        f"histogram_quantile(0.5, sum by (le) (libp2p_connection_age_seconds_bucket{{{NODE_SELECTOR}}}))",
                        "p50",
                    ),
                    Query(
                        f"histogram_quantile(0.9, sum by (le) (libp2p_connection_age_seconds_bucket{{{NODE_SELECTOR}}}))",
                        "p90",
                    ),
                ],
                min=0,
            ),
            TimeSeries(
                "Opened by IP version",
                "New connections per second over IPv4 and IPv6.",
                "cps",
                [
                    Query(
                        f"sum by (ip_version) (rate(libp2p_swarm_connections_opened_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                        "{{ip_version}}",
                    )
                ],
                min=0,
                width=24,
            ),
        ],
    )
