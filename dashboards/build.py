"""The dashboards, one per subsystem, written with Grafana's foundation SDK (Grafana 11.6 build).

Panels are declared as small ``P`` records and turned into SDK builders in ``_panel``: the records keep
the dashboards readable, the SDK keeps the JSON valid for Grafana 11.6. Every query selects on the
``$instance`` and ``$node`` variables and uses the ``$datasource`` variable, never a fixed uid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pq
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from dashboards import alerts

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
S = 'instance=~"$instance", node=~"$node"'
RI = "$__rate_interval"
TAGS = ["libp2p", "libp2p-exporter"]


@dataclass
class P:
    """One panel: kind is ts (time series), stat or table."""

    kind: str
    title: str
    description: str
    unit: str
    targets: list[tuple[str, str]]
    w: int = 12
    h: int = 8
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    min: float | None = None
    stack: bool = False


def _threshold_steps(steps: list[tuple[float | None, str]]) -> db.ThresholdsConfig:
    """Absolute steps; a first step without a value sets the base colour (green unless given)."""
    if not steps or steps[0][0] is not None:
        steps = [(None, "green"), *steps]
    return (
        db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def _panel(spec: P, pid: int, x: int, y: int) -> Any:
    if spec.kind == "ts":
        b: Any = (
            timeseries.Panel()
            .line_width(1)
            .fill_opacity(10)
            .legend(
                cb.VizLegendOptions()
                .show_legend(True)
                .display_mode(cm.LegendDisplayMode.LIST)
                .placement(cm.LegendPlacement.BOTTOM)
            )
            .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
        )
        if spec.stack:
            b = b.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)).fill_opacity(40)
        if spec.thresholds:
            b = b.thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
    elif spec.kind == "stat":
        b = (
            stat.Panel()
            .graph_mode(cm.BigValueGraphMode.AREA)
            .color_mode(cm.BigValueColorMode.VALUE)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
    elif spec.kind == "table":
        b = table.Panel().align(cm.FieldTextAlignment.AUTO).inspect(False).show_header(True)
    else:
        raise ValueError(spec.kind)
    b = b.id(pid).title(spec.title).description(spec.description).unit(spec.unit).datasource(DS)
    b = b.grid_pos(dm.GridPos(h=spec.h, w=spec.w, x=x, y=y))
    if spec.min is not None:
        b = b.min(spec.min)
    if spec.thresholds:
        b = b.thresholds(_threshold_steps(spec.thresholds))
    for i, (expr, legend) in enumerate(spec.targets):
        q = pq.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)).datasource(DS)
        q = q.instant().format(pm.PromQueryFormat.TABLE) if spec.kind == "table" else q.range()
        b = b.with_target(q)
    return b


def _variables() -> list[Any]:
    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        db.QueryVariable("instance")
        .label("Exporter instance")
        .datasource(DS)
        .query("label_values(libp2p_exporter_up, instance)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
        db.QueryVariable("node")
        .label("Node")
        .datasource(DS)
        .query('label_values(libp2p_exporter_up{instance=~"$instance"}, node)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
    ]


def _dashboard(uid: str, title: str, description: str, panels: list[P]) -> dm.Dashboard:
    b = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
    )
    for v in _variables():
        b = b.with_variable(v)
    b = b.link(
        db.DashboardLink("libp2p dashboards")
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(["libp2p-exporter"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    )
    x = y = row_h = 0
    for pid, spec in enumerate(panels, start=1):
        if x + spec.w > 24:  # start a new row when the panel does not fit
            x, y, row_h = 0, y + row_h, 0
        b = b.with_panel(_panel(spec, pid, x, y))
        x, row_h = x + spec.w, max(row_h, spec.h)
    return b.build()


# -- the dashboards ------------------------------------------------------------------------------


def overview(p: dict[str, Any]) -> dm.Dashboard:
    return _dashboard(
        "libp2p-overview",
        "libp2p / Overview",
        "The state of every observed libp2p node at a glance: peers, connections, streams, traffic, churn.",
        [
            P(
                "stat",
                "Nodes up",
                "Observed nodes whose introspection data is current (libp2p_exporter_up). Fewer than expected: see the Exporter health dashboard.",
                "none",
                [(f"sum(libp2p_exporter_up{{{S}}})", "nodes up")],
                w=4,
                h=4,
            ),
            P(
                "stat",
                "Peers",
                "Distinct peers with at least one open connection, summed over the selected nodes.",
                "none",
                [(f"sum(libp2p_peers{{{S}}})", "peers")],
                w=4,
                h=4,
            ),
            P(
                "stat",
                "Open connections",
                "Connections in status active in the latest snapshot. One peer may hold several.",
                "none",
                [(f'sum(libp2p_connections{{{S}, status="active"}})', "connections")],
                w=4,
                h=4,
            ),
            P(
                "stat",
                "Open streams",
                "Streams in status active in the latest snapshot, all protocols.",
                "none",
                [(f'sum(libp2p_streams{{{S}, status="active"}})', "streams")],
                w=4,
                h=4,
            ),
            P(
                "stat",
                "Bandwidth",
                "Instantaneous bandwidth the nodes report (in plus out), bytes per second.",
                "Bps",
                [(f"sum(libp2p_bandwidth_bytes_per_second{{{S}}})", "bandwidth")],
                w=4,
                h=4,
            ),
            P(
                "stat",
                "Peer churn",
                "Peers connected plus disconnected per minute, per current peer. Above the alert threshold (red) for long, Libp2pHighPeerChurn fires.",
                "none",
                [(f"max({_churn(S, RI)})", "churn")],
                w=4,
                h=4,
                thresholds=[(float(p["churn_per_peer_per_minute"]), "red")],
            ),
            P(
                "ts",
                "Peers per node",
                "Connected peers of each node over time. Sudden steps down are peer-count drops; a slow slide under the floor is isolation.",
                "none",
                [(f"libp2p_peers{{{S}}}", "{{node}}")],
                min=0,
            ),
            P(
                "ts",
                "Traffic",
                "Bytes per second in and out of each node, from the node's cumulative traffic counters.",
                "Bps",
                [
                    (
                        f"sum by (node, direction) (rate(libp2p_traffic_bytes_total{{{S}}}[{RI}]))",
                        "{{node}} {{direction}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Connections opened and closed",
                "Connections per second the nodes opened and closed. The two lines track each other when the population is stable.",
                "cps",
                [
                    (f"sum by (node) (rate(libp2p_swarm_connections_opened_total{{{S}}}[{RI}]))", "{{node}} opened"),
                    (f"sum by (node) (rate(libp2p_swarm_connections_closed_total{{{S}}}[{RI}]))", "{{node}} closed"),
                ],
                min=0,
            ),
            P(
                "table",
                "Nodes",
                "Every node's implementation, version and platform as its Runtime message reports them (value is always 1).",
                "none",
                [(f"libp2p_node_info{{{S}}}", "")],
            ),
        ],
    )


def _churn(sel: str, window: str) -> str:
    return (
        f"(sum by (node) (rate(libp2p_peers_connected_total{{{sel}}}[{window}])) + sum by (node) "
        f"(rate(libp2p_peers_disconnected_total{{{sel}}}[{window}]))) * 60 / clamp_min(sum by (node) "
        f"(libp2p_peers{{{sel}}}), 1)"
    )


def connections(p: dict[str, Any]) -> dm.Dashboard:
    h = "libp2p_swarm_connection_duration_seconds_bucket"
    return _dashboard(
        "libp2p-connections",
        "libp2p / Connections (swarm)",
        "Connections by transport, direction, security and muxer; how long they live and how fast they set up.",
        [
            P(
                "ts",
                "Open connections by transport",
                "Active connections in the latest snapshot per transport (tcp, quic-v1, ws, webtransport, ...; unknown values fold into other).",
                "none",
                [(f'sum by (transport) (libp2p_connections{{{S}, status="active"}})', "{{transport}}")],
                stack=True,
                min=0,
            ),
            P(
                "ts",
                "Open connections by direction",
                "Active connections we dialled (outbound) or accepted (inbound). No inbound at all points at reachability trouble.",
                "none",
                [(f'sum by (dir) (libp2p_connections{{{S}, status="active"}})', "{{dir}}")],
                stack=True,
                min=0,
            ),
            P(
                "ts",
                "Connections by status",
                "Connections listed in the snapshot by status: closed and error ones stay listed for the retention period before they vanish.",
                "none",
                [(f"sum by (status) (libp2p_connections{{{S}}})", "{{status}}")],
                min=0,
            ),
            P(
                "ts",
                "Security and muxer",
                "Active connections per security protocol and stream muxer (QUIC has its own muxer and shows unknown).",
                "none",
                [
                    (
                        f'sum by (security, muxer) (libp2p_connections{{{S}, status="active"}})',
                        "{{security}} / {{muxer}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Opened per second by transport",
                "New connections per second per transport and direction.",
                "cps",
                [
                    (
                        f"sum by (transport, dir) (rate(libp2p_swarm_connections_opened_total{{{S}}}[{RI}]))",
                        "{{transport}} {{dir}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Closed per second by transport",
                "Connections closing per second per transport and direction (a connection that vanished from the snapshot counts once).",
                "cps",
                [
                    (
                        f"sum by (transport, dir) (rate(libp2p_swarm_connections_closed_total{{{S}}}[{RI}]))",
                        "{{transport}} {{dir}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Connection lifetime",
                "Median and 90th percentile lifetime of the connections that closed, from the duration histogram (buckets 1/16 s × 2^n).",
                "s",
                [
                    (f"histogram_quantile(0.5, sum by (le) (rate({h}{{{S}}}[{RI}])))", "p50"),
                    (f"histogram_quantile(0.9, sum by (le) (rate({h}{{{S}}}[{RI}])))", "p90"),
                ],
                min=0,
            ),
            P(
                "ts",
                "Handshake latency",
                "Time from opening a connection to a finished security and muxer upgrade (open_ts to upgraded_ts), p50 and p90.",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(libp2p_swarm_handshake_latency_seconds_bucket{{{S}}}[{RI}])))",
                        "p50",
                    ),
                    (
                        f"histogram_quantile(0.9, sum by (le) (rate(libp2p_swarm_handshake_latency_seconds_bucket{{{S}}}[{RI}])))",
                        "p90",
                    ),
                ],
                min=0,
            ),
            P(
                "ts",
                "Connection latency now",
                "Median and p90 round-trip latency the node measured on its open connections (a point-in-time distribution, no rate).",
                "s",
                [
                    (f"histogram_quantile(0.5, sum by (le) (libp2p_connection_latency_seconds_bucket{{{S}}}))", "p50"),
                    (f"histogram_quantile(0.9, sum by (le) (libp2p_connection_latency_seconds_bucket{{{S}}}))", "p90"),
                ],
                min=0,
            ),
            P(
                "ts",
                "Connection age now",
                "Median and p90 age of the open connections in the latest snapshot: a falling median means the population is being replaced.",
                "s",
                [
                    (f"histogram_quantile(0.5, sum by (le) (libp2p_connection_age_seconds_bucket{{{S}}}))", "p50"),
                    (f"histogram_quantile(0.9, sum by (le) (libp2p_connection_age_seconds_bucket{{{S}}}))", "p90"),
                ],
                min=0,
            ),
            P(
                "ts",
                "Opened by IP version",
                "New connections per second over IPv4 and IPv6.",
                "cps",
                [(f"sum by (ip_version) (rate(libp2p_swarm_connections_opened_total{{{S}}}[{RI}]))", "{{ip_version}}")],
                min=0,
                w=24,
            ),
        ],
    )


def streams(p: dict[str, Any]) -> dm.Dashboard:
    return _dashboard(
        "libp2p-streams",
        "libp2p / Streams and protocols",
        "Streams per protocol (allow-listed protocol ids, the rest fold into other), their lifetime and traffic.",
        [
            P(
                "ts",
                "Open streams by protocol",
                "Active streams in the latest snapshot per protocol id.",
                "none",
                [(f'sum by (protocol) (libp2p_streams{{{S}, status="active"}})', "{{protocol}}")],
                stack=True,
                min=0,
            ),
            P(
                "ts",
                "Open streams by direction",
                "Active streams we opened (outbound) or the remote opened (inbound).",
                "none",
                [(f'sum by (dir) (libp2p_streams{{{S}, status="active"}})', "{{dir}}")],
                stack=True,
                min=0,
            ),
            P(
                "ts",
                "Streams opened per second",
                "New streams per second per protocol.",
                "ops",
                [(f"sum by (protocol) (rate(libp2p_streams_opened_total{{{S}}}[{RI}]))", "{{protocol}}")],
                min=0,
            ),
            P(
                "ts",
                "Streams closed per second",
                "Streams closing per second per protocol (including streams of a connection that closed).",
                "ops",
                [(f"sum by (protocol) (rate(libp2p_streams_closed_total{{{S}}}[{RI}]))", "{{protocol}}")],
                min=0,
            ),
            P(
                "ts",
                "Stream lifetime p90",
                "90th percentile lifetime of the streams that closed, per protocol.",
                "s",
                [
                    (
                        f"histogram_quantile(0.9, sum by (le, protocol) (rate(libp2p_stream_duration_seconds_bucket{{{S}}}[{RI}])))",
                        "{{protocol}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Protocol traffic",
                "Bytes per second per protocol and direction, summed from per-stream traffic.",
                "Bps",
                [
                    (
                        f"sum by (protocol, direction) (rate(libp2p_protocol_traffic_bytes_total{{{S}}}[{RI}]))",
                        "{{protocol}} {{direction}}",
                    )
                ],
                min=0,
            ),
        ],
    )


def traffic(p: dict[str, Any]) -> dm.Dashboard:
    return _dashboard(
        "libp2p-traffic",
        "libp2p / Traffic",
        "Bytes and packets in and out of each node, and how they split by transport and protocol.",
        [
            P(
                "ts",
                "Node traffic",
                "Bytes per second in and out per node, from the node's whole-node cumulative counters.",
                "Bps",
                [
                    (
                        f"sum by (node, direction) (rate(libp2p_traffic_bytes_total{{{S}}}[{RI}]))",
                        "{{node}} {{direction}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Packets",
                "Packets per second in and out per node.",
                "pps",
                [
                    (
                        f"sum by (node, direction) (rate(libp2p_traffic_packets_total{{{S}}}[{RI}]))",
                        "{{node}} {{direction}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Reported bandwidth",
                "The instantaneous bandwidth the node itself reports (inst_bw), which smooths differently from the rate of the byte counters.",
                "Bps",
                [(f"sum by (node, direction) (libp2p_bandwidth_bytes_per_second{{{S}}})", "{{node}} {{direction}}")],
                min=0,
            ),
            P(
                "ts",
                "Traffic by transport",
                "Bytes per second per transport and direction, from per-connection traffic.",
                "Bps",
                [
                    (
                        f"sum by (transport, direction) (rate(libp2p_transport_traffic_bytes_total{{{S}}}[{RI}]))",
                        "{{transport}} {{direction}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Traffic by protocol (top 10)",
                "The ten busiest protocol and direction pairs, bytes per second.",
                "Bps",
                [
                    (
                        f"topk(10, sum by (protocol, direction) (rate(libp2p_protocol_traffic_bytes_total{{{S}}}[{RI}])))",
                        "{{protocol}} {{direction}}",
                    )
                ],
                min=0,
            ),
            P(
                "stat",
                "Bytes in the time range",
                "Total bytes in and out over the dashboard's time range.",
                "bytes",
                [(f"sum by (direction) (increase(libp2p_traffic_bytes_total{{{S}}}[$__range]))", "{{direction}}")],
                w=12,
            ),
        ],
    )


def dht(p: dict[str, Any]) -> dm.Dashboard:
    rt = f'sum by (node) (libp2p_dht_peers{{{S}, status=~"active|missing"}})'
    return _dashboard(
        "libp2p-dht",
        "libp2p / DHT",
        "The Kademlia routing table (buckets, peers by status, churn) and the queries the node serves and sends.",
        [
            P(
                "stat",
                "DHT enabled",
                "1 when the node reports an enabled DHT, per node (minimum over the selection).",
                "bool",
                [(f"min(libp2p_dht_enabled{{{S}}})", "enabled")],
                w=6,
                h=4,
            ),
            P(
                "stat",
                "Bucket size k",
                "The routing table's bucket size parameter.",
                "none",
                [(f"max(libp2p_dht_k{{{S}}})", "k")],
                w=6,
                h=4,
            ),
            P(
                "stat",
                "Concurrency alpha",
                "Query concurrency parameter.",
                "none",
                [(f"max(libp2p_dht_alpha{{{S}}})", "alpha")],
                w=6,
                h=4,
            ),
            P(
                "stat",
                "Buckets",
                "Buckets in the routing table (per node, maximum over the selection).",
                "none",
                [(f"max(libp2p_dht_buckets{{{S}}})", "buckets")],
                w=6,
                h=4,
            ),
            P(
                "ts",
                "Routing table size",
                "Peers in a bucket (active or missing) per node; the dashed line is the Libp2pDhtRoutingTableShrinking threshold, a share of the recent maximum.",
                "none",
                [
                    (rt, "{{node}}"),
                    (
                        f"{1 - float(p['dht_shrink_ratio']):g} * max_over_time({rt}[{p['dht_shrink_window']}:])",
                        "{{node}} alert threshold",
                    ),
                ],
                min=0,
            ),
            P(
                "ts",
                "Peers by status",
                "Routing-table peers by status: active (connected), missing (in a bucket, not connected), candidate (waiting for room), rejected.",
                "none",
                [(f"sum by (status) (libp2p_dht_peers{{{S}}})", "{{status}}")],
                stack=True,
                min=0,
            ),
            P(
                "ts",
                "Peers per bucket",
                "Peers in each bucket by common prefix length (cpl): low cpl buckets are the far, full ones.",
                "none",
                [(f'sum by (cpl) (libp2p_dht_bucket_peers{{{S}, status=~"active|missing"}})', "cpl {{cpl}}")],
                stack=True,
                min=0,
            ),
            P(
                "ts",
                "Routing table churn",
                "Peers added to or removed from buckets, and status changes, per second.",
                "ops",
                [(f"sum by (action) (rate(libp2p_dht_routing_table_updates_total{{{S}}}[{RI}]))", "{{action}}")],
                min=0,
            ),
            P(
                "ts",
                "Queries per second",
                "DHT queries per second by direction and result (success, error, timeout), from the node's cumulative gauges.",
                "reqps",
                [
                    (
                        f"sum by (direction, result) (rate(libp2p_dht_queries_total{{{S}}}[{RI}]))",
                        "{{direction}} {{result}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Query success ratio",
                "Share of queries that succeeded, per direction. Falling means unreachable or misbehaving peers.",
                "percentunit",
                [
                    (
                        f'sum by (direction) (rate(libp2p_dht_queries_total{{{S}, result="success"}}[{RI}])) / sum by (direction) (rate(libp2p_dht_queries_total{{{S}}}[{RI}]))',
                        "{{direction}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Query duration p90",
                "90th percentile query time by direction, from the query events' totalTimeMs.",
                "s",
                [
                    (
                        f"histogram_quantile(0.9, sum by (le, direction) (rate(libp2p_dht_query_duration_seconds_bucket{{{S}}}[{RI}])))",
                        "{{direction}}",
                    )
                ],
                min=0,
                w=24,
            ),
        ],
    )


def churn(p: dict[str, Any]) -> dm.Dashboard:
    w = p["short_lived_window"]
    bucket = alerts.le_matcher(p["short_lived_seconds"])
    h = "libp2p_swarm_connection_duration_seconds"
    return _dashboard(
        "libp2p-churn",
        "libp2p / Events and churn",
        "Peer churn as the alert rules see it: connect and disconnect rates, short-lived connections, peer-count changes, with the alert thresholds drawn in.",
        [
            P(
                "ts",
                "Peers connected and disconnected",
                "Peers per minute that went from no open connection to one (connected) and back (disconnected).",
                "cpm",
                [
                    (f"sum by (node) (rate(libp2p_peers_connected_total{{{S}}}[{RI}])) * 60", "{{node}} connected"),
                    (
                        f"sum by (node) (rate(libp2p_peers_disconnected_total{{{S}}}[{RI}])) * 60",
                        "{{node}} disconnected",
                    ),
                ],
                min=0,
            ),
            P(
                "ts",
                "Connections opened and closed",
                "Connections per minute opened and closed, per node and direction.",
                "cpm",
                [
                    (
                        f"sum by (node, dir) (rate(libp2p_swarm_connections_opened_total{{{S}}}[{RI}])) * 60",
                        "{{node}} opened {{dir}}",
                    ),
                    (
                        f"sum by (node, dir) (rate(libp2p_swarm_connections_closed_total{{{S}}}[{RI}])) * 60",
                        "{{node}} closed {{dir}}",
                    ),
                ],
                min=0,
            ),
            P(
                "ts",
                "Peer churn per peer",
                f"(peers connected + disconnected per minute) / current peers, over the alert's {p['churn_window']} window. Above the dashed line for {p['churn_for']}, Libp2pHighPeerChurn fires.",
                "none",
                [(_churn(S, p["churn_window"]), "{{node}}")],
                thresholds=[(float(p["churn_per_peer_per_minute"]), "red")],
                min=0,
            ),
            P(
                "ts",
                "Connection churn per peer",
                f"(connections opened + closed per minute) / current peers over {p['churn_window']}. Above the dashed line for {p['churn_for']}, Libp2pHighConnectionChurn fires.",
                "none",
                [
                    (
                        f"(sum by (node) (rate(libp2p_swarm_connections_opened_total{{{S}}}[{p['churn_window']}])) + sum by (node) (rate(libp2p_swarm_connections_closed_total{{{S}}}[{p['churn_window']}]))) * 60 / clamp_min(sum by (node) (libp2p_peers{{{S}}}), 1)",
                        "{{node}}",
                    )
                ],
                thresholds=[(float(p["conn_churn_per_peer_per_minute"]), "red")],
                min=0,
            ),
            P(
                "ts",
                "Short-lived connections",
                f"Share of the connections closed in the last {w} that lived under {p['short_lived_seconds']} s. Above the dashed line for {p['short_lived_for']} (with enough closes), Libp2pShortLivedConnections fires.",
                "percentunit",
                [
                    (
                        f"sum by (node) (rate({h}_bucket{{{S}, {bucket}}}[{w}])) / sum by (node) (rate({h}_count{{{S}}}[{w}]))",
                        "{{node}}",
                    )
                ],
                thresholds=[(float(p["short_lived_share"]), "red")],
                min=0,
            ),
            P(
                "ts",
                "Peer count and floors",
                f"Connected peers per node. Dashed lines: the critical floor ({p['peer_floor_critical']}, Libp2pPeerCountCritical) and the warning floor ({p['peer_floor_warning']}, Libp2pPeerCountLow); the colour under them is the alert level. The 'drop threshold' series is the level under which Libp2pPeerCountDrop fires.",
                "none",
                [
                    (f"libp2p_peers{{{S}}}", "{{node}}"),
                    (
                        f"{1 - float(p['peer_drop_ratio']):g} * max_over_time(libp2p_peers{{{S}}}[{p['peer_drop_window']}])",
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
            P(
                "ts",
                "Peer count change",
                "Change in connected peers over the last 5 minutes per node: negative bars are peers lost.",
                "none",
                [(f"delta(libp2p_peers{{{S}}}[5m])", "{{node}}")],
            ),
            P(
                "ts",
                "Inbound connections opened",
                f"Inbound connections opened over the last {p['no_inbound_window']}; at 0 for {p['no_inbound_for']}, Libp2pNoInboundConnections fires.",
                "none",
                [
                    (
                        f'sum by (node) (increase(libp2p_swarm_connections_opened_total{{{S}, dir="inbound"}}[{p["no_inbound_window"]}]))'
                        # a node that never had an inbound connection has no inbound series: show it as 0
                        f" or sum by (node) (libp2p_peers{{{S}}}) * 0",
                        "{{node}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Events by type",
                "Introspection events per second by type (allow-listed names, the rest fold into other).",
                "ops",
                [(f"sum by (type) (rate(libp2p_events_total{{{S}}}[{RI}]))", "{{type}}")],
                min=0,
            ),
            P(
                "ts",
                "DHT routing table churn",
                "Peers added to or removed from DHT buckets per second.",
                "ops",
                [(f"sum by (action) (rate(libp2p_dht_routing_table_updates_total{{{S}}}[{RI}]))", "{{action}}")],
                min=0,
            ),
        ],
    )


def exporter_health(p: dict[str, Any]) -> dm.Dashboard:
    return _dashboard(
        "libp2p-exporter-health",
        "libp2p / Exporter health",
        "Is the exporter itself healthy: scrapes, per-node data freshness, decode errors, dropped snapshots.",
        [
            P(
                "ts",
                "Scrape target up",
                "Prometheus' own up series for the exporter targets: 0 means the exporter did not answer a scrape.",
                "bool",
                [('up{instance=~"$instance"}', "{{instance}}")],
                min=0,
                w=8,
            ),
            P(
                "ts",
                "Node data current",
                "libp2p_exporter_up per node: 1 when the node's data is current and exported, 0 when its source is down or stale.",
                "bool",
                [(f"libp2p_exporter_up{{{S}}}", "{{node}}")],
                min=0,
                w=8,
            ),
            P(
                "ts",
                "Snapshots per second",
                "State snapshots accepted per second per node: it should match the node's push interval.",
                "ops",
                [(f"rate(libp2p_exporter_snapshots_total{{{S}}}[{RI}])", "{{node}}")],
                min=0,
                w=8,
            ),
            P(
                "ts",
                "Snapshot age",
                "Seconds since the instant of the last accepted State (node clock). Replayed captures show their recorded time, so only live sources read as an age.",
                "s",
                [(f"time() - libp2p_exporter_last_snapshot_timestamp_seconds{{{S}}}", "{{node}}")],
            ),
            P(
                "ts",
                "Segment errors",
                "Introspection segments skipped per second by reason (checksum, truncated, oversized, version, protobuf). Any is worth a look; Libp2pExporterDecodeErrors alerts.",
                "ops",
                [
                    (
                        f"sum by (node, reason) (rate(libp2p_exporter_segment_errors_total{{{S}}}[{RI}]))",
                        "{{node}} {{reason}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Dropped snapshots",
                "States ignored per second because they repeated or preceded the last accepted one.",
                "ops",
                [
                    (
                        f"sum by (node, reason) (rate(libp2p_exporter_snapshots_dropped_total{{{S}}}[{RI}]))",
                        "{{node}} {{reason}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Messages by kind",
                "Server messages decoded per second by kind (state, event, runtime, response, notice).",
                "ops",
                [(f"sum by (kind) (rate(libp2p_exporter_messages_total{{{S}}}[{RI}]))", "{{kind}}")],
                min=0,
            ),
            P(
                "ts",
                "Scrape duration",
                "Time the exporter spent building a scrape's metric families.",
                "s",
                [('libp2p_exporter_scrape_duration_seconds{instance=~"$instance"}', "{{instance}}")],
                min=0,
            ),
            P(
                "ts",
                "Label values folded",
                "Remote-controlled label values (protocols, agents, ...) past the allow-list and cap that became other, per second. Steady growth means a new protocol to allow-list, or a peer flooding names.",
                "ops",
                [
                    (
                        'sum by (label) (rate(libp2p_exporter_label_values_folded_total{instance=~"$instance"}[$__rate_interval]))',
                        "{{label}}",
                    )
                ],
                min=0,
            ),
            P(
                "ts",
                "Node restarts and command errors",
                "Restarts the exporter detected (new peer id, counters going back) and CommandResponse ERR answers, over the time range.",
                "none",
                [
                    (f"increase(libp2p_exporter_node_restarts_total{{{S}}}[$__range])", "{{node}} restarts"),
                    (f"increase(libp2p_exporter_command_errors_total{{{S}}}[$__range])", "{{node}} command errors"),
                ],
                min=0,
            ),
            P(
                "ts",
                "Introspection settings",
                "The push interval and retention the node confirmed, and how long it took to build its last snapshot.",
                "s",
                [
                    (f"libp2p_introspection_interval_seconds{{{S}}}", "{{node}} interval"),
                    (f"libp2p_introspection_retention_seconds{{{S}}}", "{{node}} retention"),
                    (f"libp2p_introspection_snapshot_duration_seconds{{{S}}}", "{{node}} snapshot build"),
                ],
                min=0,
                w=24,
            ),
        ],
    )


DASHBOARDS = {
    "overview": overview,
    "connections": connections,
    "streams": streams,
    "traffic": traffic,
    "dht": dht,
    "churn": churn,
    "exporter-health": exporter_health,
}


def _pubsub(p: dict[str, Any]) -> dm.Dashboard:
    from dashboards.pubsub import pubsub  # its own module (it reuses the panel helpers above)

    return pubsub(p)


DASHBOARDS["pubsub"] = _pubsub
