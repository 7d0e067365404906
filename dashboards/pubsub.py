"""The pubsub dashboard and alert group, from go-libp2p-pubsub trace metrics (exporter/pubsub_metrics.py).

Mesh size per topic is drawn against gossipsub's D_lo/D/D_hi (go-libp2p-pubsub defaults 5/6/12,
overridable like every alert parameter), beside delivery, duplicate and rejection rates, propagation
delay quantiles and reach across the traced fleet. Its node variable comes from the pubsub metrics
themselves: traced nodes need not be introspected too.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import alerts
from dashboards.build import DS, RI, TAGS, P, _panel

S = 'instance=~"$instance", node=~"$node", topic=~"$topic"'
F = 'instance=~"$instance", topic=~"$topic"'  # fleet-wide series carry no node
BY = "job, instance, node, topic"


def _variables() -> list[Any]:
    def query(name: str, label: str, q: str) -> Any:
        return (
            db.QueryVariable(name)
            .label(label)
            .datasource(DS)
            .query(q)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )

    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query("instance", "Exporter instance", "label_values(libp2p_pubsub_traced_nodes, instance)"),
        query("node", "Node", 'label_values(libp2p_pubsub_last_event_timestamp_seconds{instance=~"$instance"}, node)'),
        query("topic", "Topic", 'label_values(libp2p_pubsub_topic_msg_published_total{instance=~"$instance"}, topic)'),
    ]


def _quantiles(metric: str, sel: str, by: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[{RI}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.9, 0.99)
    ]


def pubsub(p: dict[str, Any]) -> dm.Dashboard:
    d_lo, d, d_hi = (int(p[k]) for k in ("pubsub_d_lo", "pubsub_d", "pubsub_d_hi"))
    rate = lambda m, by="topic": f"sum by ({by}) (rate({m}{{{S}}}[{RI}]))"  # noqa: E731
    panels = [
        P(
            "stat",
            "Traced nodes",
            "Nodes whose trace events reach this exporter.",
            "none",
            [('sum(libp2p_pubsub_traced_nodes{instance=~"$instance"})', "nodes")],
            w=6,
            h=5,
        ),
        P(
            "stat",
            "Collector streams",
            "Remote-tracer streams open now (/libp2p/pubsub/tracer/1.0.0).",
            "none",
            [('sum(libp2p_pubsub_collector_streams{instance=~"$instance"})', "streams")],
            w=6,
            h=5,
        ),
        P(
            "stat",
            "Published per second",
            "Messages published by the traced nodes.",
            "ops",
            [(f"sum(rate(libp2p_pubsub_topic_msg_published_total{{{S}}}[{RI}]))", "published")],
            w=6,
            h=5,
        ),
        P(
            "stat",
            "Messages in the window",
            "Messages followed for propagation and reach right now.",
            "none",
            [('sum(libp2p_pubsub_tracked_messages{instance=~"$instance"})', "messages")],
            w=6,
            h=5,
        ),
        P(
            "ts",
            "Mesh peers per topic",
            f"Peers in each node's mesh, against gossipsub's D_lo={d_lo} (red below), D={d}, D_hi={d_hi} "
            "(orange above). A mesh under D_lo for long is a collapsing mesh (alert Libp2pPubsubMeshCollapse).",
            "none",
            [(f"libp2p_pubsub_mesh_peer_counts{{{S}}}", "{{node}} {{topic}}")],
            w=24,
            thresholds=[(None, "red"), (d_lo, "green"), (d_hi + 1, "orange")],
            min=0,
        ),
        P(
            "ts",
            "Deliveries and duplicates per second",
            "DELIVER_MESSAGE (first copies, the origin's own included), first copies from another peer, and "
            "DUPLICATE_MESSAGE (copies after the first).",
            "ops",
            [
                (rate("libp2p_pubsub_delivered_messages_total"), "delivered {{topic}}"),
                (rate("libp2p_pubsub_topic_msg_recv_total"), "received {{topic}}"),
                (rate("libp2p_pubsub_duplicate_messages_total"), "duplicate {{topic}}"),
            ],
            min=0,
        ),
        P(
            "ts",
            "Duplicates per delivery",
            "Duplicate copies per first copy: gossipsub's amplification.",
            "none",
            [
                (
                    f"{rate('libp2p_pubsub_duplicate_messages_total')}\n/ clamp_min({rate('libp2p_pubsub_delivered_messages_total')}, 1e-9)",
                    "{{topic}}",
                )
            ],
            min=0,
        ),
        P(
            "ts",
            "Rejections by reason",
            "REJECT_MESSAGE by go-libp2p-pubsub's reason (validation, signature, ...).",
            "ops",
            [(rate("libp2p_pubsub_rejected_messages_total", "topic, reason"), "{{reason}} {{topic}}")],
            min=0,
            stack=True,
        ),
        P(
            "ts",
            "Rejection share",
            "Rejected / (rejected + delivered), the quantity alert Libp2pPubsubRejectionShare watches.",
            "percentunit",
            [
                (
                    f"{rate('libp2p_pubsub_rejected_messages_total')}\n/ ({rate('libp2p_pubsub_rejected_messages_total')}"
                    f" + {rate('libp2p_pubsub_delivered_messages_total')})",
                    "{{topic}}",
                )
            ],
            thresholds=[(float(p["pubsub_reject_share"]), "red")],
            min=0,
        ),
        P(
            "ts",
            "Propagation delay",
            "From a message's publish on its origin to its delivery on each other traced node (nodes' clocks).",
            "s",
            _quantiles("libp2p_pubsub_propagation_delay_seconds", F, "topic"),
            thresholds=[(float(p["pubsub_propagation_p99_seconds"]), "red")],
            min=0,
        ),
        P(
            "ts",
            "Message reach",
            "Per message, the share of traced nodes joined to the topic that delivered it "
            "(observed when the message leaves the exporter's window).",
            "percentunit",
            [
                (
                    f"sum by (topic) (rate(libp2p_pubsub_message_reach_ratio_sum{{{F}}}[{RI}]))\n/ "
                    f"sum by (topic) (rate(libp2p_pubsub_message_reach_ratio_count{{{F}}}[{RI}]))",
                    "mean {{topic}}",
                ),
                (
                    f"histogram_quantile(0.1, sum by (topic, le) (rate(libp2p_pubsub_message_reach_ratio_bucket{{{F}}}[{RI}])))",
                    "p10 {{topic}}",
                ),
            ],
            min=0,
        ),
        P(
            "ts",
            "Grafts and prunes per second",
            "Mesh churn: peers added to and removed from meshes.",
            "ops",
            [
                (rate("libp2p_pubsub_mesh_grafts_total"), "graft {{topic}}"),
                (rate("libp2p_pubsub_mesh_prunes_total"), "prune {{topic}}"),
            ],
            min=0,
        ),
        P(
            "ts",
            "RPCs per second",
            "RPCs the routers sent, received and dropped (a full queue drops).",
            "ops",
            [
                (
                    f'sum by (result) (rate(libp2p_pubsub_rpcs_total{{instance=~"$instance", node=~"$node"}}[{RI}]))',
                    "{{result}}",
                )
            ],
            min=0,
        ),
        P(
            "ts",
            "Control messages per second",
            "IHAVE, IWANT, GRAFT, PRUNE and IDONTWANT entries, in and out.",
            "ops",
            [
                (
                    f'sum by (direction, kind) (rate(libp2p_pubsub_control_messages_total{{instance=~"$instance", node=~"$node"}}[{RI}]))',
                    "{{direction}} {{kind}}",
                )
            ],
            min=0,
        ),
        P(
            "ts",
            "Peers per protocol",
            "Pubsub peers by the router protocol they speak.",
            "none",
            [
                (
                    'sum by (protocol) (libp2p_pubsub_peers_per_protocol{instance=~"$instance", node=~"$node"})',
                    "{{protocol}}",
                )
            ],
            min=0,
            stack=True,
        ),
    ]
    b = (
        db.Dashboard("libp2p pubsub")
        .uid("libp2p-pubsub")
        .description("Gossipsub from go-libp2p-pubsub event traces: meshes, deliveries, rejections, propagation.")
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
        if x + spec.w > 24:
            x, y, row_h = 0, y + row_h, 0
        b = b.with_panel(_panel(spec, pid, x, y))
        x, row_h = x + spec.w, max(row_h, spec.h)
    return b.build()


def rejection_share_expr(p: dict[str, Any]) -> str:
    j = f'job=~"{p["job"]}"'
    w = p["pubsub_reject_window"]
    rej = f"sum by ({BY}) (rate(libp2p_pubsub_rejected_messages_total{{{j}}}[{w}]))"
    dlv = f"sum by ({BY}) (rate(libp2p_pubsub_delivered_messages_total{{{j}}}[{w}]))"
    return f"{rej}\n/ clamp_min({rej} + ({dlv} or {rej} * 0), 1e-9)\n> {alerts._num(p['pubsub_reject_share'])}"


def rules(p: dict[str, Any]) -> dict[str, Any]:
    j = f'job=~"{p["job"]}"'
    num = alerts._num
    return {
        "name": "libp2p-pubsub",
        "rules": [
            alerts._alert(
                "Libp2pPubsubMeshCollapse",
                f"libp2p_pubsub_mesh_peer_counts{{{j}}} < {num(p['pubsub_d_lo'])}",
                p["pubsub_mesh_for"],
                "warning",
                "libp2p node {{ $labels.node }}: gossipsub mesh for {{ $labels.topic }} below D_lo",
                f"Node {{{{ $labels.node }}}} has {{{{ $value }}}} mesh peers for topic {{{{ $labels.topic }}}}, "
                f"under D_lo={num(p['pubsub_d_lo'])}, for {p['pubsub_mesh_for']}: messages reach it by gossip only.",
            ),
            alerts._alert(
                "Libp2pPubsubRejectionShare",
                rejection_share_expr(p),
                p["pubsub_reject_for"],
                "warning",
                "libp2p node {{ $labels.node }}: many rejected messages on {{ $labels.topic }}",
                f"{{{{ $value | humanizePercentage }}}} of the messages node {{{{ $labels.node }}}} validated on "
                f"{{{{ $labels.topic }}}} over {p['pubsub_reject_window']} were rejected (threshold "
                f"{num(float(p['pubsub_reject_share']) * 100)}%).",
            ),
            alerts._alert(
                "Libp2pPubsubPropagationSlow",
                f"histogram_quantile(0.99, sum by (job, instance, topic, le) "
                f"(rate(libp2p_pubsub_propagation_delay_seconds_bucket{{{j}}}[{p['pubsub_propagation_window']}])))\n"
                f"> {num(p['pubsub_propagation_p99_seconds'])}",
                p["pubsub_propagation_for"],
                "warning",
                "gossipsub propagation on {{ $labels.topic }} is slow",
                f"99% of deliveries on topic {{{{ $labels.topic }}}} took up to {{{{ $value | humanizeDuration }}}} "
                f"from publish, above {num(p['pubsub_propagation_p99_seconds'])} s, over "
                f"{p['pubsub_propagation_window']}.",
            ),
        ],
    }
