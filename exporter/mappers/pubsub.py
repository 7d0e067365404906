"""Per-node, per-topic gossipsub metrics and fleet-wide propagation, from go-libp2p-pubsub trace events.

A trace mapper (``pipeline.traces``): the hub feeds it TraceEvents from any source (the remote-tracer
collector, trace files); it keeps counters and the mesh per traced node and, because it sees many
nodes, follows each message from its publish on the origin to its delivery on every other traced
node. ``collect`` writes the families for one scrape, with the trace sources' own counters.

Counting follows go-libp2p-pubsub-tracer's ``tracestat``: every DELIVER_MESSAGE is a delivery (the
origin's own delivery of what it published included), every DUPLICATE_MESSAGE a duplicate, every
REJECT_MESSAGE a rejection. Propagation delay is a receiver's DELIVER timestamp minus the origin's
PUBLISH timestamp (nodes' clocks; a negative difference counts as 0 and is counted as skew); the
origin's own delivery is not a propagation sample. Reach is observed once per message, when it leaves
the window: the share of traced nodes joined to the topic that delivered it (the origin included).

Bounds: topics and reject reasons pass an allow-list plus a cap (then ``other``), nodes a cap;
message ids and remote peer ids are never labels. The message window holds at most ``max_messages``
(oldest out first) for ``ttl_s``; each message keeps at most ``max_pending`` early deliveries and
its deliverer set at most the node cap. Per node, the mesh and peer tables are capped too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from exporter.model.budget import Budget
from exporter.model.catalogue import Family, Labelled, Writer
from exporter.model.histogram import Histogram, exponential_buckets
from exporter.model.labels import LABEL_VALUES_FOLDED, Cardinality, LabelGuard
from exporter.pipeline.traces import COLLECTOR_ERRORS, TraceIntakeStats, TraceMapper
from exporter.protocol.pubsub_codec import TraceEvent, b58, b58_decode
from exporter.settings import Pubsub as PubsubSettings

T = TraceEvent.Type
PREFIX = "libp2p_pubsub_"
PROPAGATION_BUCKETS = exponential_buckets(0.001, 2, 16)  # 1 ms .. 32.8 s
REACH_BUCKETS = tuple(i / 10 for i in range(1, 11))
KNOWN_REASONS = frozenset(
    {
        "blacklisted peer",
        "blacklisted source",
        "missing signature",
        "unexpected signature",
        "unexpected auth info",
        "invalid signature",
        "validation queue full",
        "validation throttled",
        "validation failed",
        "validation ignored",
        "self originated message",
    }
)
CONTROL_KINDS = ("ihave", "iwant", "graft", "prune", "idontwant")
_DELIVER_MESSAGE = T.Value("DELIVER_MESSAGE")
_DUPLICATE_MESSAGE = T.Value("DUPLICATE_MESSAGE")
_GRAFT = T.Value("GRAFT")
_JOIN = T.Value("JOIN")
_LEAVE = T.Value("LEAVE")
_ON_CLOSED_OUTBOUND_STREAM = T.Value("ON_CLOSED_OUTBOUND_STREAM")
_ON_NEW_OUTBOUND_STREAM = T.Value("ON_NEW_OUTBOUND_STREAM")
_PRUNE = T.Value("PRUNE")
_PUBLISH_MESSAGE = T.Value("PUBLISH_MESSAGE")
_REJECT_MESSAGE = T.Value("REJECT_MESSAGE")
# enum attributes go through a slow __getattr__ in protobuf; plain ints for the per-event path
TYPE_NAMES = {number: name for name, number in T.items()}
RPC_KINDS = {
    T.SEND_RPC: ("sendRPC", "sent", "out"),
    T.RECV_RPC: ("recvRPC", "received", "in"),
    T.DROP_RPC: ("dropRPC", "dropped", "dropped"),
}
MAX_MESH_PEERS = 1024  # per node and topic: far above any gossipsub D_hi
MAX_PEERS = 16_384  # per node, for peers per protocol


def _family(name: str, typ: str, doc: str, *labels: str) -> Family:
    return Family(PREFIX + name, typ, doc, labels)


# Per traced node (with its ``node`` label).
TOPIC_COUNTERS = (
    _family("topic_msg_published", "counter", "Messages this node published, per topic (PUBLISH_MESSAGE).", "topic"),
    _family(
        "delivered_messages", "counter", "Messages delivered, the origin's own included (DELIVER_MESSAGE).", "topic"
    ),
    _family(
        "topic_msg_recv", "counter", "Messages first received from another peer and accepted (deduplicated).", "topic"
    ),
    _family(
        "duplicate_messages", "counter", "Messages received again after the first copy (DUPLICATE_MESSAGE).", "topic"
    ),
    _family("mesh_grafts", "counter", "Peers added to this node's mesh for the topic (GRAFT).", "topic"),
    _family("mesh_prunes", "counter", "Peers removed from this node's mesh for the topic (PRUNE).", "topic"),
)
REJECTED = _family(
    "rejected_messages",
    "counter",
    "Messages rejected or ignored by validation, by go-libp2p-pubsub's reason (REJECT_MESSAGE).",
    "topic",
    "reason",
)
MESH_PEERS = _family("mesh_peer_counts", "gauge", "Peers in this node's mesh for the topic.", "topic")
TOPIC_JOINED = _family("topic_joined", "gauge", "1 while the node is joined to the topic (JOIN, LEAVE).", "topic")
PEERS_PER_PROTOCOL = _family("peers_per_protocol", "gauge", "Pubsub peers by the protocol they speak.", "protocol")
RPCS = _family("rpcs", "counter", "RPCs sent, received and dropped by the router.", "result")
CONTROL = _family(
    "control_messages", "counter", "Control entries carried by RPCs, by direction and kind.", "direction", "kind"
)
LAST_EVENT = _family("last_event_timestamp_seconds", "gauge", "Timestamp of the node's latest trace event.")
# The fleet's.
PROPAGATION_DELAY = _family(
    "propagation_delay_seconds",
    "histogram",
    "Delay from a message's publish on its origin to its delivery on each other traced node.",
    "topic",
)
REACH = _family(
    "message_reach_ratio",
    "histogram",
    "Per message: share of the traced nodes joined to the topic that delivered it.",
    "topic",
)
TRACED_NODES = _family("traced_nodes", "gauge", "Traced nodes the exporter has events from.")
TRACKED_MESSAGES = _family("tracked_messages", "gauge", "Messages in the propagation window.")
CLOCK_SKEW = _family("propagation_clock_skew", "counter", "Deliveries stamped before their publish (counted as 0 s).")
UNMATCHED = _family("messages_unmatched", "counter", "Messages that left the window with no traced publish.")
EVICTED = _family("messages_evicted", "counter", "Messages pushed out of the window by its cap before their TTL.")
TRACE_EVENTS = _family("trace_events", "counter", "Trace events ingested, by type.", "type")
# The trace sources' own (collector streams, trace files).
COLLECTOR_STREAMS = _family("collector_streams", "gauge", "Remote-tracer streams open now.")
COLLECTOR_ACCEPTED = _family("collector_streams_accepted", "counter", "Remote-tracer streams accepted.")
COLLECTOR_REFUSED = _family(
    "collector_streams_refused", "counter", "Remote-tracer streams refused (over the total or per-peer cap)."
)
COLLECTOR_BATCHES = _family("collector_batches", "counter", "TraceEventBatches received.")
COLLECTOR_ERRORS_FAMILY = _family("collector_errors", "counter", "Remote-tracer streams cut off, by reason.", "reason")
FILE_ERRORS = _family("file_errors", "counter", "Damaged stretches skipped in trace files.", "reason")


@dataclass
class NodeStats:
    """One traced node's counters and live state (labels already bounded)."""

    published: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)  # delivered from another peer
    duplicate: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    grafts: Counter[str] = field(default_factory=Counter)
    prunes: Counter[str] = field(default_factory=Counter)
    rpc: Counter[str] = field(default_factory=Counter)  # sent, received, dropped
    control: Counter[tuple[str, str]] = field(default_factory=Counter)  # (direction, kind)
    mesh: defaultdict[str, set[bytes]] = field(default_factory=lambda: defaultdict(set))
    joined: set[str] = field(default_factory=set)
    peers: dict[bytes, str] = field(default_factory=dict)  # peer -> protocol
    last_event_ns: int = 0


@dataclass(slots=True)
class _Message:
    topic: str
    origin: bytes | None = None
    publish_ns: int | None = None
    deliverers: int = 0  # bit i set: traced node number i delivered it (a few bytes, not a set)
    pending: list[tuple[bytes, int]] | None = None  # deliveries seen before the publish
    born: float = 0.0


@dataclass
class FleetStats:
    delay: dict[str, Histogram] = field(default_factory=dict)
    reach: dict[str, Histogram] = field(default_factory=dict)
    skew: int = 0
    unmatched: int = 0  # messages that left the window without a traced publish
    evicted: int = 0  # messages pushed out by the cap before their TTL


class PubsubMetrics(TraceMapper):
    """Gossipsub metrics from trace events; thread-safe (``ingest`` and ``collect`` may race)."""

    name = "pubsub"

    def __init__(
        self,
        cardinality: Cardinality | None = None,
        *,
        topics: Iterable[str] = (),
        topic_cap: int = PubsubSettings.topic_cap,
        node_cap: int = 256,
        names: dict[str, str] | None = None,
        max_messages: int = PubsubSettings.max_messages,
        max_pending: int = 256,
        ttl_s: float = PubsubSettings.window_s,
        clock: Callable[[], float] = time.monotonic,
        intake: TraceIntakeStats | None = None,
    ) -> None:
        card = cardinality or Cardinality()
        self.intake = intake  # the trace sources' own counters, exported with these metrics
        self.protocol = card.protocol
        self.topic = LabelGuard("topic", frozenset(topics), topic_cap)
        self.reason = LabelGuard("reject_reason", KNOWN_REASONS, 8)
        self.node_label = LabelGuard("pubsub_node", frozenset((names or {}).values()), node_cap)
        self.names = dict(names or {})
        self.max_messages = max_messages
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self.clock = clock
        self.nodes: dict[str, NodeStats] = {}
        self.fleet = FleetStats()
        self.events: Counter[str] = Counter()
        self._node_of: dict[bytes, str] = {}
        self._bit: dict[bytes, int] = {}  # traced node -> its bit in _Message.deliverers (bounded)
        self._joined_bits: Counter[str] = Counter()  # topic -> OR of the bits of nodes joined to it
        self._msgs: OrderedDict[bytes, _Message] = OrderedDict()
        self._lock = threading.Lock()

    def node_gone(self, peer_b58: str) -> None:
        """The node stopped tracing (its collector stream ended long ago): drop what it said it *has*
        (mesh, topics, peers), which nobody would correct any more; its counters stay."""
        with self._lock:
            name = self._node_of.get(b58_decode(peer_b58))
            stats = self.nodes.get(name) if name is not None else None
            if stats is None:
                return
            stats.mesh.clear()
            stats.joined.clear()
            stats.peers.clear()
            bit = self._bit.get(b58_decode(peer_b58), 0)
            for topic in self._joined_bits:
                self._joined_bits[topic] &= ~bit

    def set_name(self, peer_b58: str, name: str) -> None:
        """Label this node ``name`` (call before its first event; the name is always admitted)."""
        with self._lock:
            self.names[peer_b58] = name
            self.node_label.allow = self.node_label.allow | {name}

    def guards(self) -> list[LabelGuard]:
        return [self.topic, self.reason, self.node_label]

    # -- ingest -----------------------------------------------------------------------------------
    def _node(self, peer: bytes) -> tuple[str, NodeStats]:
        name = self._node_of.get(peer)
        if name is None:
            text = b58(peer)
            name = self.node_label(self.names.get(text, text))
            if len(self._node_of) < 4 * self.node_label.cap + len(self.names) + 16:
                self._node_of[peer] = name
        stats = self.nodes.get(name)
        if stats is None:
            stats = self.nodes[name] = NodeStats()
        return name, stats

    def _bit_of(self, peer: bytes) -> int:
        """This node's bit for reach; nodes past the cap share none (they count in no population)."""
        bit = self._bit.get(peer)
        if bit is None:
            if len(self._bit) >= self.node_label.cap + len(self.names) + 1:
                return 0
            bit = self._bit[peer] = 1 << len(self._bit)
        return bit

    def ingest(self, event: TraceEvent) -> None:
        with self._lock:
            self._ingest(event)
            self._expire()

    def ingest_all(self, events: Iterable[TraceEvent]) -> None:
        with self._lock:
            for event in events:
                self._ingest(event)
            self._expire()

    def on_traces(self, origin: str, events: Sequence[TraceEvent]) -> None:
        self.ingest_all(events)

    def on_traces_ended(self, origin: str) -> None:
        self.flush()  # a file replayed to its end: every message's reach is known now

    def _ingest(self, e: TraceEvent) -> None:
        kind = e.type
        self.events[TYPE_NAMES.get(kind, "unknown")] += 1
        _, node = self._node(e.peerID)
        node.last_event_ns = max(node.last_event_ns, e.timestamp)
        if kind == _PUBLISH_MESSAGE:
            m = e.publishMessage
            node.published[self.topic(m.topic)] += 1
            self._published(m.messageID, m.topic, e.peerID, e.timestamp)
        elif kind == _DELIVER_MESSAGE:
            d = e.deliverMessage
            topic = self.topic(d.topic)
            node.delivered[topic] += 1
            if d.receivedFrom and d.receivedFrom != e.peerID:
                node.received[topic] += 1
            self._delivered(d.messageID, d.topic, e.peerID, e.timestamp)
        elif kind == _DUPLICATE_MESSAGE:
            node.duplicate[self.topic(e.duplicateMessage.topic)] += 1
        elif kind == _REJECT_MESSAGE:
            r = e.rejectMessage
            node.rejected[(self.topic(r.topic), self.reason(r.reason or "unknown"))] += 1
        elif kind == _GRAFT:
            topic = self.topic(e.graft.topic)
            node.grafts[topic] += 1
            if len(node.mesh[topic]) < MAX_MESH_PEERS:
                node.mesh[topic].add(e.graft.peerID)
        elif kind == _PRUNE:
            topic = self.topic(e.prune.topic)
            node.prunes[topic] += 1
            members = node.mesh.get(topic)
            if members is not None:
                members.discard(e.prune.peerID)
        elif kind == _JOIN:
            topic = self.topic(e.join.topic)
            node.joined.add(topic)
            self._joined_bits[topic] |= self._bit_of(e.peerID)
        elif kind == _LEAVE:
            topic = self.topic(e.leave.topic)
            node.joined.discard(topic)
            node.mesh.pop(topic, None)
            self._joined_bits[topic] &= ~self._bit_of(e.peerID)
        elif kind == _ON_NEW_OUTBOUND_STREAM:
            o = e.onNewOutboundStream
            if o.peerID in node.peers or len(node.peers) < MAX_PEERS:
                node.peers[o.peerID] = self.protocol(o.proto or "unknown")
        elif kind == _ON_CLOSED_OUTBOUND_STREAM:
            peer = e.onClosedOutboundStream.peerID
            node.peers.pop(peer, None)
            for members in node.mesh.values():
                members.discard(peer)
        elif kind in RPC_KINDS:
            field, what, direction = RPC_KINDS[kind]
            node.rpc[what] += 1
            meta = getattr(e, field).meta
            if meta.HasField("control"):
                ctl = meta.control
                for ck in CONTROL_KINDS:
                    n = len(getattr(ctl, ck))
                    if n:
                        node.control[(direction, ck)] += n

    # -- propagation -----------------------------------------------------------------------------
    def _message(self, mid: bytes, topic: str) -> _Message:
        msg = self._msgs.get(mid)
        if msg is None:
            msg = self._msgs[mid] = _Message(topic=topic, born=self.clock())
            while len(self._msgs) > self.max_messages:
                _, old = self._msgs.popitem(last=False)
                self.fleet.evicted += 1
                self._retire(old)
        return msg

    def _published(self, mid: bytes, topic: str, origin: bytes, ts: int) -> None:
        msg = self._message(mid, topic)
        if msg.publish_ns is not None:
            return  # a second PUBLISH of one id (a replayed file): the first one stands
        msg.origin, msg.publish_ns = origin, ts
        for peer, dts in msg.pending or ():
            self._delay(msg, peer, dts)
        msg.pending = None

    def _delivered(self, mid: bytes, topic: str, peer: bytes, ts: int) -> None:
        msg = self._message(mid, topic)
        msg.deliverers |= self._bit_of(peer)
        if msg.publish_ns is None:
            if msg.pending is None:
                msg.pending = []
            if len(msg.pending) < self.max_pending:
                msg.pending.append((peer, ts))
        else:
            self._delay(msg, peer, ts)

    def _delay(self, msg: _Message, peer: bytes, ts: int) -> None:
        if peer == msg.origin or msg.publish_ns is None:
            return
        delta = ts - msg.publish_ns
        if delta < 0:
            self.fleet.skew += 1
            delta = 0
        topic = self.topic(msg.topic)
        hist = self.fleet.delay.get(topic)
        if hist is None:
            hist = self.fleet.delay[topic] = Histogram(PROPAGATION_BUCKETS)
        hist.observe(delta / 1e9)

    def _retire(self, msg: _Message) -> None:
        if msg.publish_ns is None:
            self.fleet.unmatched += 1
            return
        topic = self.topic(msg.topic)
        population = (self._joined_bits[topic] | msg.deliverers).bit_count()
        if population == 0:
            return
        hist = self.fleet.reach.get(topic)
        if hist is None:
            hist = self.fleet.reach[topic] = Histogram(REACH_BUCKETS)
        hist.observe(msg.deliverers.bit_count() / population)

    def _expire(self) -> None:
        horizon = self.clock() - self.ttl_s
        while self._msgs:
            mid, msg = next(iter(self._msgs.items()))
            if msg.born > horizon:
                break
            del self._msgs[mid]
            self._retire(msg)

    def flush(self) -> None:
        """Retire every message now (the end of a file replay): their reach is observed."""
        with self._lock:
            while self._msgs:
                _, msg = self._msgs.popitem(last=False)
                self._retire(msg)

    # -- scrape -----------------------------------------------------------------------------------
    def collect(self, out: Writer) -> None:
        """One scrape: the traced nodes, the fleet, then the trace sources' own counters."""
        intake = self.intake
        if intake is not None:
            for peer in intake.collector.gone(intake.gone_after_s):
                self.node_gone(peer)
        self.collect_into(out)
        if intake is not None:
            collect_intake(out, intake)

    def collect_into(self, out: Writer, base: dict[str, str] | None = None) -> None:
        """The traced nodes' families (each within a series budget), then the fleet's."""
        with self._lock:
            self._expire()
            for name in sorted(self.nodes):
                budget = Budget(Labelled(out, {**(base or {}), "node": name}))
                self._collect_node(budget, self.nodes[name])
                budget.close()
            budget = Budget(Labelled(out, base or {}))
            self._collect_fleet(budget)
            budget.close()

    def _collect_node(self, out: Writer, n: NodeStats) -> None:
        # every topic the node is or was in gets every per-topic counter, 0 until it happens
        topics = n.joined | set(n.mesh) | set(n.grafts) | set(n.published) | set(n.delivered)
        counts = (n.published, n.delivered, n.received, n.duplicate, n.grafts, n.prunes)
        for family, per_topic in zip(TOPIC_COUNTERS, counts):
            for topic in sorted(topics | set(per_topic)):
                out.counter(family, per_topic.get(topic, 0), {"topic": topic})
        for (topic, reason), value in sorted(n.rejected.items()):
            out.counter(REJECTED, value, {"topic": topic, "reason": reason})
        for topic in sorted(set(n.mesh) | n.joined):
            out.gauge(MESH_PEERS, len(n.mesh.get(topic, ())), {"topic": topic})
        for topic in sorted(n.joined):
            out.gauge(TOPIC_JOINED, 1, {"topic": topic})
        for proto, value in sorted(Counter(n.peers.values()).items()):
            out.gauge(PEERS_PER_PROTOCOL, value, {"protocol": proto})
        out.counters(RPCS, "result", n.rpc, known=("sent", "received", "dropped"))
        for (direction, kind), value in sorted(n.control.items()):
            out.counter(CONTROL, value, {"direction": direction, "kind": kind})
        out.gauge(LAST_EVENT, n.last_event_ns / 1e9)

    def _collect_fleet(self, out: Writer) -> None:
        for topic, hist in sorted(self.fleet.delay.items()):
            out.histogram(PROPAGATION_DELAY, hist, {"topic": topic})
        for topic, hist in sorted(self.fleet.reach.items()):
            out.histogram(REACH, hist, {"topic": topic})
        out.gauge(TRACED_NODES, len(self.nodes))
        out.gauge(TRACKED_MESSAGES, len(self._msgs))
        out.counter(CLOCK_SKEW, self.fleet.skew)
        out.counter(UNMATCHED, self.fleet.unmatched)
        out.counter(EVICTED, self.fleet.evicted)
        out.counters(TRACE_EVENTS, "type", self.events)
        for guard in self.guards():
            out.counter(LABEL_VALUES_FOLDED, guard.folded, {"label": guard.label})


def collect_intake(out: Writer, intake: TraceIntakeStats) -> None:
    """The trace sources' own counters: the collector's streams (while one runs), trace files' damage."""
    c = intake.collector
    if intake.collecting:
        out.gauge(COLLECTOR_STREAMS, c.streams_active)
        out.counter(COLLECTOR_ACCEPTED, c.streams_accepted)
        out.counter(COLLECTOR_REFUSED, c.streams_refused)
        out.counter(COLLECTOR_BATCHES, c.batches)
        out.counters(COLLECTOR_ERRORS_FAMILY, "reason", c.errors, known=COLLECTOR_ERRORS)
    if intake.files:
        out.counters(FILE_ERRORS, "reason", intake.file_errors)
