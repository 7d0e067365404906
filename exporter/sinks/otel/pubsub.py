"""One OpenTelemetry trace per pubsub message: the publish on its origin, each delivery beneath it.

The trace id is a hash of the message id and every span id a hash of (kind, node, message id), so
spans built by different exporter replicas, or from the live stream and a file of the same events,
agree and assemble into one trace in any backend, whatever order the events arrive in. A delivery
seen before its publish still names the right parent.

- root ``pubsub.publish``: on the origin, an instant at the PUBLISH_MESSAGE timestamp;
- child ``pubsub.deliver`` / ``pubsub.duplicate``: on the receiver, from the publish time (when this
  exporter saw it; otherwise an instant) to the DELIVER/DUPLICATE timestamp.

Attributes follow OpenTelemetry's messaging conventions (``messaging.system``,
``messaging.destination.name``, ``messaging.message.id``) plus ``libp2p.*`` for peers. Sampling is by
message id (``--tracing.sample.pubsub``), so a message's spans are all kept or all left out. Export
runs in a thread of its own behind the same kind of bounded, counted queue as the other spans.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from exporter import __version__
from exporter.pipeline.hub import Listener
from exporter.protocol.pubsub_codec import TraceEvent, b58
from exporter.sinks.otel.config import TracingConfig
from exporter.sinks.otel.export import Channel, Send, SpanQueue, _env_number, resource_for
from exporter.sinks.otel.metrics import SpanStats
from exporter.sinks.otel.otlp import KIND_CONSUMER, KIND_PRODUCER, Span
from exporter.sinks.otel.spans import keep

T = TraceEvent.Type
SPAN_PUBLISH = "pubsub.publish"
SPAN_DELIVER = "pubsub.deliver"
SPAN_DUPLICATE = "pubsub.duplicate"
MESSAGING_SYSTEM = "libp2p.gossipsub"


def trace_id_of(message_id: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(b"pubsub-trace" + message_id, digest_size=16).digest(), "big") or 1


def root_span_id(message_id: bytes) -> int:
    """The publish span's id: from the message id alone, so a delivery names its parent unaided."""
    return span_id_of("publish", b"", message_id)


def span_id_of(kind: str, peer: bytes, message_id: bytes) -> int:
    raw = kind.encode() + b"\0" + peer + b"\0" + message_id
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") or 1


class PubsubSpans(Listener):
    """Builds message traces from TraceEvents; a hub listener (``on_traces``), fed from one thread at a time."""

    def __init__(
        self,
        cfg: TracingConfig,
        *,
        ratio: float = 1.0,
        stats: SpanStats | None = None,
        send: Send | None = None,
        names: dict[str, str] | None = None,
        max_publishes: int = 50_000,
        max_nodes: int = 256,
    ) -> None:
        self.cfg = cfg
        self.ratio = ratio
        self.stats = stats or SpanStats()
        self.names = dict(names or {})
        self.max_publishes = max_publishes
        self.max_nodes = max_nodes
        self._publish: OrderedDict[bytes, int] = OrderedDict()  # message id -> publish ns (bounded)
        # every node's spans share one queue and thread, so its room is that of several nodes
        room = 8 * int(_env_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048))
        self.queue = SpanQueue(cfg, send, name="otel-pubsub", max_queue=room)
        self._channels: dict[bytes, Channel] = {}

    def _channel(self, peer: bytes) -> Channel:
        """The queue entry of the node that emitted the event: its resource names that node (bounded)."""
        ch = self._channels.get(peer)
        if ch is not None:
            return ch
        key = peer if len(self._channels) < self.max_nodes else b""
        if key in self._channels:
            return self._channels[key]
        text = b58(peer) if key else "other"
        attrs = {
            "service.name": self.cfg.service_name or "libp2p-pubsub",
            "service.instance.id": text,
            "libp2p.exporter.node": self.names.get(text, text),
            "libp2p.exporter.version": __version__,
        }
        if key:
            attrs["libp2p.peer.id.local"] = text
        resource = resource_for(attrs, "libp2p-exporter.pubsub", __version__)
        ch = self._channels[key] = Channel(text, resource, self.stats, None)
        return ch

    def _end(self, peer: bytes, span: Span) -> None:
        self.queue.put(self._channel(peer), span)

    def on_traces(self, origin: str, events: Sequence[TraceEvent]) -> None:
        self.on_events(events)

    def on_events(self, events: Iterable[TraceEvent]) -> None:
        for e in events:
            try:
                if e.type == T.PUBLISH_MESSAGE:
                    self._root(e)
                elif e.type == T.DELIVER_MESSAGE:
                    m = e.deliverMessage
                    self._child(SPAN_DELIVER, e, m.messageID, m.topic, m.receivedFrom)
                elif e.type == T.DUPLICATE_MESSAGE:
                    d = e.duplicateMessage
                    self._child(SPAN_DUPLICATE, e, d.messageID, d.topic, d.receivedFrom)
            except Exception:  # one odd event costs its span, never the stream
                self.stats.dropped["error"] += 1

    def _node(self, peer: bytes) -> str:
        text = b58(peer)
        return self.names.get(text, text)

    def _attrs(self, e: TraceEvent, mid: bytes, topic: str) -> dict[str, Any]:
        return {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.destination.name": topic,
            "messaging.message.id": mid.hex(),
            "libp2p.peer.id.local": b58(e.peerID),
            "libp2p.exporter.node": self._node(e.peerID),
        }

    def _root(self, e: TraceEvent) -> None:
        m = e.publishMessage
        mid = m.messageID
        if mid not in self._publish:
            self._publish[mid] = e.timestamp
            while len(self._publish) > self.max_publishes:
                self._publish.popitem(last=False)
        if not keep(mid, self.ratio):
            self.stats.sampled_out["pubsub"] += 1
            return
        attrs = {**self._attrs(e, mid, m.topic), "messaging.operation.type": "publish"}
        peer = e.peerID
        span = Span(
            SPAN_PUBLISH,
            KIND_PRODUCER,
            e.timestamp,
            attrs,
            lambda s: self._end(peer, s),
            trace_id=trace_id_of(mid),
            span_id=root_span_id(mid),
        )
        span.end(e.timestamp)
        self.stats.started["pubsub"] += 1

    def _child(self, name: str, e: TraceEvent, mid: bytes, topic: str, sender: bytes) -> None:
        if not keep(mid, self.ratio):
            self.stats.sampled_out["pubsub"] += 1
            return
        tid = trace_id_of(mid)
        published = self._publish.get(mid)
        attrs = {**self._attrs(e, mid, topic), "messaging.operation.type": "receive"}
        if sender:
            attrs["libp2p.peer.id.remote"] = b58(sender)
        start = e.timestamp
        if published is not None and published <= e.timestamp:
            start = published
            attrs["libp2p.pubsub.delay_ms"] = (e.timestamp - published) / 1e6
        else:
            attrs["libp2p.pubsub.publish_seen"] = published is not None
        # the parent is the origin's publish span, whose id depends on the message id alone: known here
        # whether or not that publish was (or will be) seen
        peer = e.peerID
        span = Span(
            name,
            KIND_CONSUMER,
            start,
            attrs,
            lambda s: self._end(peer, s),
            trace_id=tid,
            span_id=span_id_of(name, peer, mid),
            parent_id=root_span_id(mid),
            remote_parent=True,
        )
        span.end(e.timestamp)
        self.stats.started["pubsub"] += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        return self.queue.flush(timeout_s)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        self.queue.shutdown(timeout_s)
