"""The demo's gossipsub nodes trace to the demo's own exporter, as go nodes would to a collector.

Each node gets a PubsubTracer whose sink is a RemoteTracer: a real libp2p stream
``/libp2p/pubsub/tracer/1.0.0`` to the exporter's collector host (app/pubsub.py, sources/pubsub_collector.py), so the
demo's pubsub traffic reaches /metrics and OTLP the same way a fleet of go-libp2p nodes' would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from exporter.app.pubsub import PubsubWiring
from exporter.introspector.pubsub_sinks import RemoteTracer
from exporter.introspector.pubsub_tracer import PubsubTracer
from exporter.protocol.pubsub_codec import b58

log = logging.getLogger(__name__)


@dataclass
class DemoTracing:
    """Where the demo's nodes send their traces: the collector, and how to name a node in the metrics."""

    source: PubsubWiring  # with a running collector

    def attach(self, name: str, host: Any, pubsub: Any, topic: str) -> RemoteTracer:
        """Trace ``pubsub`` (before it runs) to the collector; run the returned tracer in the node's nursery.

        The node also validates ``topic``: it rejects payloads whose first byte is below 20 (about 8% of
        the demo's random payloads, under the rejection-share alert's 10%), so the dashboards' rejection panels show real REJECT_MESSAGEs.
        """
        self.source.name_node(b58(host.get_id().to_bytes()), name)
        pubsub.set_topic_validator(topic, _demo_validator, False)
        remote = RemoteTracer(host, self.source.collector_peer_info, batch_window=0.5, retry_s=2.0)
        hooks = PubsubTracer(pubsub, remote).attach()
        log.debug("demo: %s traces pubsub through %s", name, ", ".join(hooks))
        return remote


def _demo_validator(_peer: Any, msg: Any) -> bool:
    return not msg.data or msg.data[0] >= 20


def demo_tracing(pubsub: PubsubWiring | None) -> DemoTracing | None:
    """Tracing for the demo's nodes when the exporter runs a collector; None otherwise (``--no-pubsub``)."""
    if pubsub is None or not pubsub.collector_id:
        return None
    return DemoTracing(pubsub)
