"""Gossipsub from go-libp2p-pubsub trace metrics (exporter/mappers/pubsub.py): the PromQL that the
``libp2p-pubsub`` alert group and the pubsub dashboard share, and that group.

As in ``dashboards.promql``, each builder takes a selector: the rules select on the exporter's job,
the panels on ``$instance``, ``$node`` and ``$topic``; the line a panel draws is its alert's expression.
"""

from __future__ import annotations

from typing import Any

from dashboards.promql import job_selector, num

BY = "job, instance, node, topic"  # per node and topic (the mesh and rejections are a node's view)
FLEET_BY = "job, instance, topic"  # propagation is fleet-wide: no node


def mesh_peers(sel: str) -> str:
    return f"libp2p_pubsub_mesh_peer_counts{{{sel}}}"


def rejection_share(sel: str, window: str, *, by: str = BY) -> str:
    """Rejected / (rejected + delivered) per node and topic; a node with only rejections shows 1."""
    rej = f"sum by ({by}) (rate(libp2p_pubsub_rejected_messages_total{{{sel}}}[{window}]))"
    dlv = f"sum by ({by}) (rate(libp2p_pubsub_delivered_messages_total{{{sel}}}[{window}]))"
    return f"{rej}\n/ clamp_min({rej} + ({dlv} or {rej} * 0), 1e-9)"


def propagation_quantile(q: float, sel: str, window: str, *, by: str = FLEET_BY) -> str:
    return (
        f"histogram_quantile({num(q)}, sum by ({by}, le) "
        f"(rate(libp2p_pubsub_propagation_delay_seconds_bucket{{{sel}}}[{window}])))"
    )


def rules(p: dict[str, Any]) -> dict[str, Any]:
    from dashboards.alerts import _alert

    j = job_selector(p["job"])
    return {
        "name": "libp2p-pubsub",
        "rules": [
            _alert(
                "Libp2pPubsubMeshCollapse",
                f"{mesh_peers(j)} < {num(p['pubsub_d_lo'])}",
                p["pubsub_mesh_for"],
                "warning",
                "libp2p node {{ $labels.node }}: gossipsub mesh for {{ $labels.topic }} below D_lo",
                f"Node {{{{ $labels.node }}}} has {{{{ $value }}}} mesh peers for topic {{{{ $labels.topic }}}}, "
                f"under D_lo={num(p['pubsub_d_lo'])}, for {p['pubsub_mesh_for']}: messages reach it by gossip only.",
            ),
            _alert(
                "Libp2pPubsubRejectionShare",
                f"{rejection_share(j, p['pubsub_reject_window'])}\n> {num(p['pubsub_reject_share'])}",
                p["pubsub_reject_for"],
                "warning",
                "libp2p node {{ $labels.node }}: many rejected messages on {{ $labels.topic }}",
                f"{{{{ $value | humanizePercentage }}}} of the messages node {{{{ $labels.node }}}} validated on "
                f"{{{{ $labels.topic }}}} over {p['pubsub_reject_window']} were rejected (threshold "
                f"{num(float(p['pubsub_reject_share']) * 100)}%).",
            ),
            _alert(
                "Libp2pPubsubPropagationSlow",
                f"{propagation_quantile(0.99, j, p['pubsub_propagation_window'])}\n"
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
