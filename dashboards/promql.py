"""The PromQL the alert rules and the dashboards share: one definition of each quantity they both show.

Each builder takes a label selector and returns the expression. The rules select on the exporter's
job (``job_selector``); the panels on the ``$instance`` and ``$node`` variables. So the line a panel
draws is, selector apart, the expression its alert compares with the threshold, and a change to
one reaches the other.
"""

from __future__ import annotations

from typing import Any

# The rules keep these labels, so an alert names the node; the panels group the same way.
BY = "job, instance, node"
PEERS_CONNECTED = "libp2p_peers_connected_total"
PEERS_DISCONNECTED = "libp2p_peers_disconnected_total"
CONNECTIONS_OPENED = "libp2p_swarm_connections_opened_total"
CONNECTIONS_CLOSED = "libp2p_swarm_connections_closed_total"
CONNECTION_DURATION = "libp2p_swarm_connection_duration_seconds"


def num(v: Any) -> str:
    """A threshold as PromQL writes it: ``0.5``, ``10``, never ``10.0``."""
    return f"{float(v):g}"


def job_selector(job: str) -> str:
    """The rules' selector: the exporter targets' job name(s), a regex."""
    return f'job=~"{job}"'


def le_matcher(seconds: Any) -> str:
    """A ``le`` matcher that holds whether the bound was written ``8`` or ``8.0``."""
    text = num(seconds)
    return f'le=~"{text}(\\\\.0)?"' if "." not in text and "e" not in text else f'le="{text}"'


def peers(sel: str) -> str:
    """Distinct peers with an open connection, per node."""
    return f"libp2p_peers{{{sel}}}"


def peer_drop_level(sel: str, ratio: Any, window: str) -> str:
    """The peer count under which Libp2pPeerCountDrop fires: (1 - ratio) of the recent maximum."""
    return f"{num(1 - float(ratio))} * max_over_time({peers(sel)}[{window}])"


def churn_ratio(sel: str, window: str, *, per: str = "peers", by: str = BY) -> str:
    """(peers connected + disconnected per minute) / current peers; ``per="connections"`` counts
    connections opened + closed instead. The unit is per minute per peer."""
    a, b = (PEERS_CONNECTED, PEERS_DISCONNECTED) if per == "peers" else (CONNECTIONS_OPENED, CONNECTIONS_CLOSED)
    return (
        f"(\n  sum by ({by}) (rate({a}{{{sel}}}[{window}]))\n+ sum by ({by}) (rate({b}{{{sel}}}[{window}]))\n) * 60\n"
        f"/ clamp_min(sum by ({by}) ({peers(sel)}), 1)"
    )


def per_minute(metric: str, sel: str, window: str, *, by: str) -> str:
    """A counter's rate per minute, summed by ``by``: how the dashboards draw opens, closes, connects."""
    return f"sum by ({by}) (rate({metric}{{{sel}}}[{window}])) * 60"


def closes_per_minute(sel: str, window: str, *, by: str = BY) -> str:
    """Connections that closed per minute (the duration histogram counts each close once).

    Classic ``_count`` series, or a native histogram's count (``--histograms.native`` scraped by a
    Prometheus with native histograms on): whichever the server holds."""
    classic = per_minute(f"{CONNECTION_DURATION}_count", sel, window, by=by)
    native = f"histogram_count(sum by ({by}) (rate({CONNECTION_DURATION}{{{sel}}}[{window}]))) * 60"
    return f"(\n  {classic}\nor\n  {native}\n)"


def short_lived_share(sel: str, seconds: Any, window: str, *, by: str = BY) -> str:
    """Share of the connections closed in the window that lived at most ``seconds`` (a bucket bound).

    From the classic ``le`` bucket, or from native buckets with ``histogram_fraction`` (Prometheus ≥ 2.40;
    exact when ``seconds`` is a power of two and the schema is ≥ 0, interpolated otherwise)."""
    h = CONNECTION_DURATION
    classic = (
        f"sum by ({by}) (rate({h}_bucket{{{sel}, {le_matcher(seconds)}}}[{window}]))\n"
        f"  / sum by ({by}) (rate({h}_count{{{sel}}}[{window}]))"
    )
    native = f"histogram_fraction(0, {num(seconds)}, sum by ({by}) (rate({h}{{{sel}}}[{window}])))"
    return f"(\n  {classic}\nor\n  {native}\n)"


def quantile(q: Any, family: str, sel: str, window: str | None, *, by: str = "") -> str:
    """The ``q`` quantile of a histogram family, grouped by ``by`` (besides ``le``), over a rate window
    (None: a point-in-time gauge histogram, no rate). Reads classic buckets or native histograms,
    whichever the server holds: a Prometheus scraping protobuf with native histograms on stores no
    ``_bucket`` series (2.42 keeps only the native ones), one without stores no native ones."""

    def series(name: str) -> str:
        selected = f"{name}{{{sel}}}"
        return f"rate({selected}[{window}])" if window else selected

    classic_by = f"{by}, le" if by else "le"
    native_sum = f"sum by ({by}) " if by else "sum "
    return (
        f"histogram_quantile({num(q)}, sum by ({classic_by}) ({series(family + '_bucket')}))\n"
        f"or histogram_quantile({num(q)}, {native_sum}({series(family)}))"
    )


def inbound_opened(sel: str, window: str, *, by: str = BY) -> str:
    """Inbound connections opened in the window. A node that never had one has no series at all."""
    return f'sum by ({by}) (increase({CONNECTIONS_OPENED}{{{sel}, dir="inbound"}}[{window}]))'


def no_inbound(sel: str, window: str, *, by: str = BY) -> str:
    """No inbound connection opened in the window, including a node that never had one.

    The exporter creates a ``dir="inbound"`` series only when the first inbound connection opens, so
    ``increase(...) == 0`` alone never fires for a node that was unreachable from the start (the NAT
    case). The second branch covers it: a node watched for the whole window (it had ``libp2p_peers``
    a window ago) that is still watched now and has no inbound series at all.
    """
    inbound = f'{CONNECTIONS_OPENED}{{{sel}, dir="inbound"}}'
    return (
        f"{inbound_opened(sel, window, by=by)} == 0\n"
        f"or (\n  sum by ({by}) ({peers(sel)} offset {window}) * 0\n"
        f"  and on ({by}) sum by ({by}) ({peers(sel)})\n"
        f"  unless on ({by}) sum by ({by}) ({inbound})\n)"
    )


def dht_routing_table(sel: str, *, by: str = BY) -> str:
    """Peers in a routing-table bucket (active or missing), per node."""
    return f'sum by ({by}) (libp2p_dht_peers{{{sel}, status=~"active|missing"}})'


def dht_shrink_level(sel: str, ratio: Any, window: str) -> str:
    """The routing-table size under which Libp2pDhtRoutingTableShrinking fires."""
    return f"{num(1 - float(ratio))} * max_over_time({dht_routing_table(sel)}[{window}:])"


def peerstore_known(sel: str, *, by: str = BY) -> str:
    """Peers the node's peerstore knows (the schema extension), per node."""
    return f'sum by ({by}) (libp2p_peerstore_peers{{{sel}, kind="known"}})'


def growth(expr: str, window: str) -> str:
    """``expr`` now over its smallest value in the window (1 = no growth); from the first sample on.

    A minimum of 0 gives no ratio (no series) rather than a made-up one."""
    return f"(\n  {expr}\n/ (min_over_time(({expr})[{window}:]) > 0)\n)"


def peerstore_growth(sel: str, window: str, *, by: str = BY) -> str:
    """How many times its smallest size in the window the peerstore is now, per node."""
    return growth(peerstore_known(sel, by=by), window)


def peers_growth(sel: str, window: str, *, by: str = BY) -> str:
    """The same ratio for connected peers, which a healthy peerstore follows."""
    return growth(f"sum by ({by}) ({peers(sel)})", window)


def peerstore_added(sel: str, window: str, *, by: str = BY) -> str:
    """Known peers added since the smallest size in the window (absolute; the alert's floor)."""
    known = peerstore_known(sel, by=by)
    return f"(\n  {known}\n- min_over_time(({known})[{window}:])\n)"


def scrape_up(sel: str) -> str:
    """Prometheus' own ``up`` for the exporter targets."""
    return f"up{{{sel}}}"
