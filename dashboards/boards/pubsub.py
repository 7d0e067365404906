"""The pubsub dashboard: gossipsub meshes, deliveries, rejections and propagation from event traces.

Mesh size per topic is drawn against gossipsub's D_lo/D/D_hi (go-libp2p-pubsub's defaults 5/6/12,
parameters like the alert thresholds). Traced nodes need not be introspected, so the ``node``
variable comes from the pubsub metrics, and a ``topic`` variable selects topics.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import DATASOURCE, INSTANCE_SELECTOR, RATE_WINDOW, Query, Row, Stat, TimeSeries, dashboard
from dashboards.pubsub import mesh_peers, propagation_quantile, rejection_share

SEL = 'instance=~"$instance", node=~"$node", topic=~"$topic"'
FLEET = 'instance=~"$instance", topic=~"$topic"'  # fleet-wide series carry no node
NODE = 'instance=~"$instance", node=~"$node"'
VARIABLE_QUERIES = {
    "job": "label_values(libp2p_pubsub_traced_nodes, job)",
    "instance": 'label_values(libp2p_pubsub_traced_nodes{job=~"$job"}, instance)',
    "node": 'label_values(libp2p_pubsub_last_event_timestamp_seconds{instance=~"$instance"}, node)',
}


def _rate(metric: str, by: str = "topic", sel: str = SEL) -> str:
    return f"sum by ({by}) (rate({metric}{{{sel}}}[{RATE_WINDOW}]))"


def _topic_variable() -> Any:
    return (
        db.QueryVariable("topic")
        .label("Topic")
        .datasource(DATASOURCE)
        .query('label_values(libp2p_pubsub_topic_msg_published_total{instance=~"$instance"}, topic)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .build()
    )


def pubsub(p: dict[str, Any]) -> dm.Dashboard:
    d_lo, d, d_hi = (int(p[k]) for k in ("pubsub_d_lo", "pubsub_d", "pubsub_d_hi"))
    fleet = [
        Stat(
            "Traced nodes",
            "Nodes whose trace events reach this exporter.",
            "none",
            [Query(f"sum(libp2p_pubsub_traced_nodes{{{INSTANCE_SELECTOR}}})", "nodes")],
            width=6,
            height=4,
        ),
        Stat(
            "Collector streams",
            "Remote-tracer streams open now (/libp2p/pubsub/tracer/1.0.0).",
            "none",
            [Query(f"sum(libp2p_pubsub_collector_streams{{{INSTANCE_SELECTOR}}})", "streams")],
            width=6,
            height=4,
        ),
        Stat(
            "Published per second",
            "Messages the selected nodes published.",
            "ops",
            [Query(f"sum(rate(libp2p_pubsub_topic_msg_published_total{{{SEL}}}[{RATE_WINDOW}]))", "published")],
            width=6,
            height=4,
        ),
        Stat(
            "Messages followed",
            "Messages in the exporter's propagation window now.",
            "none",
            [Query(f"sum(libp2p_pubsub_tracked_messages{{{INSTANCE_SELECTOR}}})", "messages")],
            width=6,
            height=4,
        ),
    ]
    mesh = [
        TimeSeries(
            "Mesh peers per topic",
            f"Peers in each node's mesh; dashed: gossipsub's D_lo={d_lo} (red under it, alert "
            f"Libp2pPubsubMeshCollapse), D={d}, D_hi={d_hi} (orange over it).",
            "none",
            [Query(mesh_peers(SEL), "{{node}} {{topic}}")],
            width=24,
            thresholds=[(None, "red"), (d_lo, "green"), (d, "green"), (d_hi + 1, "orange")],
            min=0,
        ),
        TimeSeries(
            "Grafts and prunes per second",
            "Mesh churn: peers added to and removed from meshes.",
            "ops",
            [
                Query(_rate("libp2p_pubsub_mesh_grafts_total"), "graft {{topic}}"),
                Query(_rate("libp2p_pubsub_mesh_prunes_total"), "prune {{topic}}"),
            ],
            min=0,
        ),
        TimeSeries(
            "Peers per protocol",
            "Pubsub peers by the router protocol they speak.",
            "none",
            [Query(f"sum by (protocol) (libp2p_pubsub_peers_per_protocol{{{NODE}}})", "{{protocol}}")],
            stack=True,
            min=0,
        ),
    ]
    messages = [
        TimeSeries(
            "Deliveries and duplicates per second",
            "DELIVER_MESSAGE (first copies, the origin's own included), first copies from another peer, and "
            "DUPLICATE_MESSAGE (copies after the first).",
            "ops",
            [
                Query(_rate("libp2p_pubsub_delivered_messages_total"), "delivered {{topic}}"),
                Query(_rate("libp2p_pubsub_topic_msg_recv_total"), "received {{topic}}"),
                Query(_rate("libp2p_pubsub_duplicate_messages_total"), "duplicate {{topic}}"),
            ],
            min=0,
        ),
        TimeSeries(
            "Duplicates per delivery",
            "Duplicate copies per first copy: gossipsub's amplification.",
            "none",
            [
                Query(
                    f"{_rate('libp2p_pubsub_duplicate_messages_total')}\n/ clamp_min("
                    f"{_rate('libp2p_pubsub_delivered_messages_total')}, 1e-9)",
                    "{{topic}}",
                )
            ],
            min=0,
        ),
        TimeSeries(
            "Rejections by reason",
            "REJECT_MESSAGE by go-libp2p-pubsub's reason.",
            "ops",
            [Query(_rate("libp2p_pubsub_rejected_messages_total", "topic, reason"), "{{reason}} {{topic}}")],
            stack=True,
            min=0,
        ),
        TimeSeries(
            "Rejection share",
            "Rejected / (rejected + delivered) per node and topic: what Libp2pPubsubRejectionShare compares "
            "with its threshold (dashed).",
            "percentunit",
            [Query(rejection_share(SEL, RATE_WINDOW), "{{node}} {{topic}}")],
            thresholds=[(float(p["pubsub_reject_share"]), "red")],
            min=0,
        ),
    ]
    propagation = [
        TimeSeries(
            "Propagation delay",
            "From a message's publish on its origin to its delivery on each other traced node (the nodes' "
            "clocks); p99 is what Libp2pPubsubPropagationSlow compares with its threshold (dashed).",
            "s",
            [
                Query(propagation_quantile(q, FLEET, RATE_WINDOW, by="topic"), f"p{int(q * 100)} {{{{topic}}}}")
                for q in (0.5, 0.9, 0.99)
            ],
            thresholds=[(float(p["pubsub_propagation_p99_seconds"]), "red")],
            min=0,
        ),
        TimeSeries(
            "Message reach",
            "Per message, the share of traced nodes joined to the topic that delivered it (observed when the "
            "message leaves the exporter's window): the mean and the 10th percentile.",
            "percentunit",
            [
                Query(
                    f"sum by (topic) (rate(libp2p_pubsub_message_reach_ratio_sum{{{FLEET}}}[{RATE_WINDOW}]))\n/ "
                    f"sum by (topic) (rate(libp2p_pubsub_message_reach_ratio_count{{{FLEET}}}[{RATE_WINDOW}]))",
                    "mean {{topic}}",
                ),
                Query(
                    f"histogram_quantile(0.1, sum by (topic, le) (rate(libp2p_pubsub_message_reach_ratio_bucket"
                    f"{{{FLEET}}}[{RATE_WINDOW}])))",
                    "p10 {{topic}}",
                ),
            ],
            min=0,
        ),
    ]
    rpcs = [
        TimeSeries(
            "RPCs per second",
            "RPCs the routers sent, received and dropped (a full queue drops).",
            "ops",
            [Query(_rate("libp2p_pubsub_rpcs_total", "result", NODE), "{{result}}")],
            min=0,
        ),
        TimeSeries(
            "Control messages per second",
            "IHAVE, IWANT, GRAFT, PRUNE and IDONTWANT entries, in and out.",
            "ops",
            [Query(_rate("libp2p_pubsub_control_messages_total", "direction, kind", NODE), "{{direction}} {{kind}}")],
            min=0,
        ),
    ]
    built = dashboard(
        "libp2p-pubsub",
        "libp2p pubsub",
        "Gossipsub from go-libp2p-pubsub event traces: meshes, deliveries, rejections, propagation and reach.",
        [
            Row("Fleet", fleet),
            Row("Mesh", mesh),
            Row("Messages", messages),
            Row("Propagation", propagation),
            Row("RPCs", rpcs),
        ],
    )
    for var in built.templating.list_val or []:
        if var.name in VARIABLE_QUERIES:
            var.query = VARIABLE_QUERIES[var.name]
    built.templating.list_val = [*(built.templating.list_val or []), _topic_variable()]
    return built
