"""The Events and churn dashboard: peer churn as the alert rules see it, with their thresholds drawn in."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import NODE_SELECTOR, PER_MINUTE_PER_PEER, RATE_WINDOW, Query, Row, TimeSeries, dashboard
from dashboards.promql import (
    BY,
    CONNECTIONS_CLOSED,
    CONNECTIONS_OPENED,
    PEERS_CONNECTED,
    PEERS_DISCONNECTED,
    churn_ratio,
    inbound_opened,
    peer_drop_level,
    peers,
    per_minute,
    short_lived_share,
)


def churn(p: dict[str, Any]) -> dm.Dashboard:
    w = p["short_lived_window"]
    peer_churn = [
        TimeSeries(
            "Peers connected and disconnected",
            "Peers per minute that went from no open connection to one (connected) and back (disconnected).",
            "cpm",
            [
                Query(per_minute(PEERS_CONNECTED, NODE_SELECTOR, RATE_WINDOW, by="node"), "{{node}} connected"),
                Query(per_minute(PEERS_DISCONNECTED, NODE_SELECTOR, RATE_WINDOW, by="node"), "{{node}} disconnected"),
            ],
            min=0,
        ),
        TimeSeries(
            "Peer churn per peer",
            f"(peers connected + disconnected per minute) / current peers, over the alert's {p['churn_window']} window. Above the dashed line for {p['churn_for']}, Libp2pHighPeerChurn fires.",
            PER_MINUTE_PER_PEER,
            [Query(churn_ratio(NODE_SELECTOR, p["churn_window"]), "{{node}}")],
            thresholds=[(float(p["churn_per_peer_per_minute"]), "red")],
            min=0,
        ),
        TimeSeries(
            "Peer count and floors",
            f"Connected peers per node. Dashed lines: the critical floor ({p['peer_floor_critical']}, Libp2pPeerCountCritical) and the warning floor ({p['peer_floor_warning']}, Libp2pPeerCountLow); the colour under them is the alert level. The 'drop threshold' series is the level under which Libp2pPeerCountDrop fires.",
            "none",
            [
                Query(peers(NODE_SELECTOR), "{{node}}"),
                Query(
                    peer_drop_level(NODE_SELECTOR, p["peer_drop_ratio"], p["peer_drop_window"]),
                    "{{node}} drop threshold",
                ),
            ],
            thresholds=[
                (None, "red"),
                (float(p["peer_floor_critical"]), "orange"),
                (float(p["peer_floor_warning"]), "green"),
            ],
            min=0,
        ),
        TimeSeries(
            "Peer count change",
            "Change in connected peers over the last 5 minutes per node: below zero, peers were lost.",
            "none",
            [Query(f"delta({peers(NODE_SELECTOR)}[5m])", "{{node}}")],
        ),
    ]
    connection_churn = [
        TimeSeries(
            "Connections opened and closed",
            "Connections per minute opened and closed, per node and direction.",
            "cpm",
            [
                Query(
                    per_minute(CONNECTIONS_OPENED, NODE_SELECTOR, RATE_WINDOW, by="node, dir"),
                    "{{node}} opened {{dir}}",
                ),
                Query(
                    per_minute(CONNECTIONS_CLOSED, NODE_SELECTOR, RATE_WINDOW, by="node, dir"),
                    "{{node}} closed {{dir}}",
                ),
            ],
            min=0,
        ),
        TimeSeries(
            "Connection churn per peer",
            f"(connections opened + closed per minute) / current peers over {p['churn_window']}. Above the dashed line for {p['churn_for']}, Libp2pHighConnectionChurn fires.",
            PER_MINUTE_PER_PEER,
            [Query(churn_ratio(NODE_SELECTOR, p["churn_window"], per="connections"), "{{node}}")],
            thresholds=[(float(p["conn_churn_per_peer_per_minute"]), "red")],
            min=0,
        ),
        TimeSeries(
            "Short-lived connections",
            f"Share of the connections closed in the last {w} that lived under {p['short_lived_seconds']} s. Above the dashed line for {p['short_lived_for']} (with enough closes), Libp2pShortLivedConnections fires.",
            "percentunit",
            [Query(short_lived_share(NODE_SELECTOR, p["short_lived_seconds"], w), "{{node}}")],
            thresholds=[(float(p["short_lived_share"]), "red")],
            min=0,
        ),
        TimeSeries(
            "Inbound connections opened",
            f"Inbound connections opened over the last {p['no_inbound_window']}; at 0 for {p['no_inbound_for']}, Libp2pNoInboundConnections fires.",
            "none",
            [
                Query(
                    # a node that never had an inbound connection has no inbound series: show it as 0
                    f"{inbound_opened(NODE_SELECTOR, p['no_inbound_window'])} or sum by ({BY}) ({peers(NODE_SELECTOR)}) * 0",
                    "{{node}}",
                )
            ],
            min=0,
        ),
    ]
    events = [
        TimeSeries(
            "Events by type",
            "Introspection events per second by type (allow-listed names, the rest fold into other).",
            "ops",
            [Query(f"sum by (type) (rate(libp2p_events_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))", "{{type}}")],
            min=0,
        ),
        TimeSeries(
            "DHT routing table churn",
            "Peers added to or removed from DHT buckets per second.",
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
    return dashboard(
        "libp2p-churn",
        "libp2p / Events and churn",
        "Peer churn as the alert rules see it: connect and disconnect rates, short-lived connections, peer-count changes, with the alert thresholds drawn in.",
        [Row("Peer churn", peer_churn), Row("Connection churn", connection_churn), Row("Events", events)],
    )
