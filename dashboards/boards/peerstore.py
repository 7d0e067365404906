"""The peerstore dashboard: how much each node knows, and who its peers are (the schema extension).

Empty for producers that do not send the extension (the 2020 schema has no peerstore).
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import NODE_SELECTOR, RATE_WINDOW, Query, Row, Stat, TimeSeries, dashboard
from dashboards.promql import num, peers_growth, peerstore_growth


def peerstore(p: dict[str, Any]) -> dm.Dashboard:
    window = p["peerstore_growth_window"]
    size = [
        Stat(
            "Known peers",
            "Peers in the peerstores of the selected nodes (summed).",
            "none",
            [Query(f'sum(libp2p_peerstore_peers{{{NODE_SELECTOR}, kind="known"}})', "known")],
            width=6,
            height=4,
        ),
        Stat(
            "Connected share",
            "Connected peers over known peers: a peerstore that grows while this falls remembers peers it will not meet again.",
            "percentunit",
            [
                Query(
                    f'sum(libp2p_peers{{{NODE_SELECTOR}}}) / (sum(libp2p_peerstore_peers{{{NODE_SELECTOR}, kind="known"}}) > 0)',
                    "connected / known",
                )
            ],
            width=6,
            height=4,
        ),
        Stat(
            "Limit",
            "The peerstore's limit on known peers, where the implementation has one (py-libp2p: max_peers).",
            "none",
            [Query(f"min(libp2p_peerstore_max_peers{{{NODE_SELECTOR}}})", "max peers")],
            width=6,
            height=4,
        ),
        Stat(
            "Evictions",
            "Peers evicted to stay within the limit over the dashboard's range, where the implementation counts them.",
            "none",
            [
                Query(
                    f"sum(increase(libp2p_peerstore_evictions_total{{{NODE_SELECTOR}}}[$__range]))",
                    "evicted",
                    instant=True,
                )
            ],
            width=6,
            height=4,
        ),
        TimeSeries(
            "Known peers by kind",
            "All known peers, and those with an address, a public key, a signed peer record, protocols (from identify).",
            "none",
            [Query(f"sum by (node, kind) (libp2p_peerstore_peers{{{NODE_SELECTOR}}})", "{{node}} {{kind}}")],
            min=0,
        ),
        TimeSeries(
            "Growth: peerstore vs connected peers",
            f"Each quantity over its smallest value in the last {window}. Libp2pPeerstoreGrowing fires when the "
            f"peerstore is above the red line while connected peers stay near 1.",
            "none",
            [
                Query(peerstore_growth(NODE_SELECTOR, window), "{{node}} peerstore"),
                Query(peers_growth(NODE_SELECTOR, window), "{{node}} connected peers"),
            ],
            thresholds=[(1 + float(p["peerstore_growth_ratio"]), "red")],
            min=0,
        ),
    ]
    quality = [
        TimeSeries(
            "Addresses per peer",
            "Median and 90th percentile of unexpired addresses per known peer (peers without an address count as 0).",
            "none",
            [
                Query(
                    f"histogram_quantile({q}, sum by (node, le) (libp2p_peerstore_addresses_per_peer_bucket{{{NODE_SELECTOR}}}))",
                    f"{{{{node}}}} p{int(q * 100)}",
                )
                for q in (0.5, 0.9)
            ],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Latency EWMA",
            "Median and 90th percentile of the peers' latency EWMA (peers with a measured latency only).",
            "s",
            [
                Query(
                    f"histogram_quantile({q}, sum by (node, le) (libp2p_peerstore_latency_ewma_seconds_bucket{{{NODE_SELECTOR}}}))",
                    f"{{{{node}}}} p{int(q * 100)}",
                )
                for q in (0.5, 0.9)
            ],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Evictions per second",
            "Peers evicted to stay within the limit, per second (only where the implementation counts them).",
            "ops",
            [
                Query(
                    f"sum by (node) (rate(libp2p_peerstore_evictions_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}]))",
                    "{{node}}",
                )
            ],
            min=0,
            width=8,
        ),
    ]
    who = [
        TimeSeries(
            "Peers per implementation",
            "Known peers by agent (identify's agent version: libp2p implementations and the clients built on them; other = the rest).",
            "none",
            [Query(f"sum by (agent) (libp2p_peerstore_agent_peers{{{NODE_SELECTOR}}})", "{{agent}}")],
            stack=True,
            min=0,
        ),
        TimeSeries(
            "Peers per agent version",
            "Known peers by agent and major.minor version, the 10 largest: client diversity and upgrade progress.",
            "none",
            [
                Query(
                    f"topk(10, sum by (agent, version) (libp2p_peerstore_agent_peers{{{NODE_SELECTOR}}}))",
                    "{{agent}} {{version}}",
                )
            ],
            min=0,
        ),
        TimeSeries(
            "Peers per protocol",
            "Known peers supporting each protocol, the 10 largest (protocol ids past the allow-list and cap are other).",
            "none",
            [
                Query(
                    f"topk(10, sum by (protocol) (libp2p_peerstore_protocol_peers{{{NODE_SELECTOR}}}))",
                    "{{protocol}}",
                )
            ],
            min=0,
            width=24,
        ),
    ]
    return dashboard(
        "libp2p-peerstore",
        "libp2p / Peerstore",
        "What each node's peerstore knows (known peers, addresses, keys, records, latency, limit and evictions) and "
        f"who its peers are (implementations, versions, protocols). Needs producers sending the peerstore extension; "
        f"growth ratios over {window} ({num(1 + float(p['peerstore_growth_ratio']))} is the alert line).",
        [Row("Size and growth", size), Row("Addresses and latency", quality), Row("Who the peers are", who)],
    )
