"""The same-output naive exporter: prometheus_client instruments in their own CollectorRegistry.

It decodes and walks each State exactly like the floor (``floor.Tracker``: the same fields, the same
opens/closes and byte deltas), then does what the prometheus_client documentation teaches: labelled
``Gauge``s are ``clear()``ed and ``set()`` per State, ``Counter``s ``inc()``ed by each increase,
``Histogram``s ``observe()``d per closed connection or stream, and the point-in-time distributions
``clear()``ed and re-``observe()``d for every open connection. The exposition is
``generate_latest(registry)``. So the difference to the floor is the metric layer alone.

Same families, samples and label sets as ours except (checked by ``bench_core.py --compare``): the
gauge histograms (``libp2p_connection_latency_seconds``, ``libp2p_connection_age_seconds``) are
prometheus_client ``Histogram``s, so they also carry ``_count``/``_sum`` beside the ``_gcount``/``_gsum``
gauges set next to them (prometheus_client has no gauge-histogram instrument).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

from bench.floor import STATUS, LabelCache, Tracker
from bench.floor_node import QUERY_KEYS, SEGMENT_REASONS, decode
from exporter import __version__
from exporter.model.histogram import (
    AGE_BUCKETS,
    CONNECTION_DURATION_BUCKETS,
    HANDSHAKE_LATENCY_BUCKETS,
    LATENCY_BUCKETS,
    STREAM_DURATION_BUCKETS,
)
from exporter.protocol import introspection_pb2 as pb

disable_created_metrics()  # ours exports no _created samples
CONN5 = ["dir", "transport", "security", "muxer", "ip_version"]


class NaiveNode:
    """One node exported through prometheus_client instruments."""

    def __init__(self, name: str, labels: LabelCache) -> None:
        self.name = name
        self.labels = labels
        self.tracker = Tracker(labels)
        r = self.registry = CollectorRegistry()
        n = ["node"]

        def g(name: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, name, [*n, *extra], registry=r)

        def c(name: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, name, [*n, *extra], registry=r)

        def h(name: str, bounds: tuple[float, ...], extra: tuple[str, ...] = ()) -> Histogram:
            return Histogram(name, name, [*n, *extra], registry=r, buckets=bounds)

        self.up = g("libp2p_exporter_up")
        self.last_ts = g("libp2p_exporter_last_snapshot_timestamp_seconds")
        self.snapshots = c("libp2p_exporter_snapshots")
        self.messages = c("libp2p_exporter_messages", ("kind",))
        self.dropped = c("libp2p_exporter_snapshots_dropped", ("reason",))
        self.seg_errors = c("libp2p_exporter_segment_errors", ("reason",))
        self.cmd_errors = c("libp2p_exporter_command_errors")
        self.restarts = c("libp2p_exporter_node_restarts")
        self.info = g("libp2p_node_info", ("implementation", "version", "platform", "peer_id"))
        self.snap_duration = g("libp2p_introspection_snapshot_duration_seconds")
        self.interval = g("libp2p_introspection_interval_seconds")
        self.retention = g("libp2p_introspection_retention_seconds")
        self.connections = g("libp2p_connections", ("status", "dir", "transport", "security", "muxer"))
        self.peers = g("libp2p_peers")
        self.opened = c("libp2p_swarm_connections_opened", tuple(CONN5))
        self.closed = c("libp2p_swarm_connections_closed", tuple(CONN5))
        self.duration = h("libp2p_swarm_connection_duration_seconds", CONNECTION_DURATION_BUCKETS, tuple(CONN5))
        self.handshake = h("libp2p_swarm_handshake_latency_seconds", HANDSHAKE_LATENCY_BUCKETS, tuple(CONN5[1:4]))
        self.joined = c("libp2p_peers_connected")
        self.left = c("libp2p_peers_disconnected")
        self.latency = h("libp2p_connection_latency_seconds", LATENCY_BUCKETS)
        self.latency_n = g("libp2p_connection_latency_seconds_gcount")
        self.latency_sum = g("libp2p_connection_latency_seconds_gsum")
        self.age = h("libp2p_connection_age_seconds", AGE_BUCKETS)
        self.age_n = g("libp2p_connection_age_seconds_gcount")
        self.age_sum = g("libp2p_connection_age_seconds_gsum")
        self.streams = g("libp2p_streams", ("protocol", "dir", "status"))
        self.referenced = g("libp2p_streams_referenced")
        self.s_opened = c("libp2p_streams_opened", ("protocol", "dir"))
        self.s_closed = c("libp2p_streams_closed", ("protocol", "dir"))
        self.s_duration = h("libp2p_stream_duration_seconds", STREAM_DURATION_BUCKETS, ("protocol",))
        self.node_bytes = c("libp2p_traffic_bytes", ("direction",))
        self.node_packets = c("libp2p_traffic_packets", ("direction",))
        self.bandwidth = g("libp2p_bandwidth_bytes_per_second", ("direction",))
        self.proto_bytes = c("libp2p_protocol_traffic_bytes", ("protocol", "direction"))
        self.transport_bytes = c("libp2p_transport_traffic_bytes", ("transport", "direction"))
        self.dht_enabled = g("libp2p_dht_enabled")
        self.dht_params = [g(f"libp2p_dht_{p}") for p in ("k", "alpha", "beta", "disjoint_paths")]
        self.dht_buckets = g("libp2p_dht_buckets")
        self.bucket_peers = g("libp2p_dht_bucket_peers", ("cpl", "status"))
        self.dht_peers = g("libp2p_dht_peers", ("status",))
        self.queries = c("libp2p_dht_queries", ("direction", "result"))
        self.updates = c("libp2p_dht_routing_table_updates", ("action",))
        self.malformed = c("libp2p_events_malformed")
        self.build = Gauge("libp2p_exporter_build_info", "v", ["version"], registry=r)
        self.nodes = Gauge("libp2p_exporter_nodes", "n", registry=r)
        self.folded = Counter("libp2p_exporter_label_values_folded", "f", ["label"], registry=r)
        self.scrape = Gauge("libp2p_exporter_scrape_duration_seconds", "s", registry=r)
        # Series that exist at zero until something happens, as ours exports them.
        for reason in ("duplicate", "out_of_order"):
            self.dropped.labels(name, reason)
        for reason in SEGMENT_REASONS:
            self.seg_errors.labels(name, reason)
        for metric in (self.cmd_errors, self.restarts, self.malformed, self.snapshots):
            metric.labels(name)
        self.build.labels(__version__).set(1)
        self.nodes.set(1)
        for guard in labels.card.guards():
            self.folded.labels(guard.label)
        self.folded_seen = {guard.label: 0 for guard in labels.card.guards()}
        self.node_last = [0, 0, 0, 0]
        self.q_last = [0] * 6

    def ingest(self, segment: bytes) -> None:
        msg = decode(segment)
        kind = msg.WhichOneof("payload") or "empty"
        node = self.name
        self.messages.labels(node, kind).inc()
        if kind == "state":
            self._state(msg.state)
        elif kind == "runtime":
            rt = msg.runtime
            self.info.clear()
            self.info.labels(
                node,
                rt.implementation or "unknown",
                rt.version or "unknown",
                rt.platform or "unknown",
                rt.peer_id or "unknown",
            ).set(1)
        elif kind == "response" and msg.response.HasField("effective_config"):
            cfg = msg.response.effective_config
            self.interval.labels(node).set(cfg.state_snapshot_interval_ms / 1000.0)
            self.retention.labels(node).set(cfg.retention_period_ms / 1000.0)

    def _state(self, state: pb.State) -> None:
        node = self.name
        last = self.tracker.last_ts
        ts = state.instant_ts
        if ts and ts <= last:
            self.dropped.labels(node, "duplicate" if ts == last else "out_of_order").inc()
            return
        step = self.tracker.step(state)
        assert step is not None
        self.snapshots.labels(node).inc()
        self.up.labels(node).set(1)
        if step.instant_ts:
            self.last_ts.labels(node).set(step.instant_ts / 1000.0)
        if step.duration_ms:
            self.snap_duration.labels(node).set(step.duration_ms / 1000.0)
        if step.traffic is not None:
            for i, (metric, direction) in enumerate(
                (
                    (self.node_bytes, "in"),
                    (self.node_bytes, "out"),
                    (self.node_packets, "in"),
                    (self.node_packets, "out"),
                )
            ):
                v, p = step.traffic[i], self.node_last[i]
                metric.labels(node, direction).inc(v - p if v >= p else v)
                self.node_last[i] = v
            self.bandwidth.clear()
            self.bandwidth.labels(node, "in").set(step.traffic[4])
            self.bandwidth.labels(node, "out").set(step.traffic[5])
        self.connections.clear()
        for (st, l4), n in step.conns.items():
            self.connections.labels(node, STATUS.get(st, "unknown"), *l4).set(n)
        self.peers.labels(node).set(step.peers)
        for labels, hs in step.opened:
            self.opened.labels(node, *labels).inc()
            if hs is not None:
                self.handshake.labels(node, *labels[1:4]).observe(hs)
        for labels, dur in step.closed:
            self.closed.labels(node, *labels).inc()
            if dur is not None:
                self.duration.labels(node, *labels).observe(dur)
        self.joined.labels(node).inc(step.joined)
        self.left.labels(node).inc(step.left)
        for hist, n_gauge, sum_gauge, values in (
            (self.latency, self.latency_n, self.latency_sum, step.latencies),
            (self.age, self.age_n, self.age_sum, step.ages),
        ):
            hist.clear()
            child = hist.labels(node)
            for v in values:
                child.observe(v)
            n_gauge.labels(node).set(len(values))
            sum_gauge.labels(node).set(sum(values))
        self.streams.clear()
        for (p, d, st), n in step.streams.items():
            self.streams.labels(node, p, d, STATUS.get(st, "unknown")).set(n)
        self.referenced.clear()
        if step.referenced:
            self.referenced.labels(node).set(step.referenced)
        for p, d in step.s_opened:
            self.s_opened.labels(node, p, d).inc()
        for p, d, dur in step.s_closed:
            self.s_closed.labels(node, p, d).inc()
            if dur is not None:
                self.s_duration.labels(node, p).observe(dur)
        for (p, d), v in step.proto_bytes.items():
            self.proto_bytes.labels(node, p, d).inc(v)
        for (t, d), v in step.transport_bytes.items():
            self.transport_bytes.labels(node, t, d).inc(v)
        dht = step.dht
        if dht is not None:
            self.dht_enabled.labels(node).set(1.0 if dht.enabled else 0.0)
            for gauge, value in zip(self.dht_params, dht.params):
                gauge.labels(node).set(value)
            self.dht_buckets.labels(node).set(len(dht.cpls))
            self.bucket_peers.clear()
            for (cpl, status), n in dht.per_bucket.items():
                self.bucket_peers.labels(node, cpl, status).set(n)
            self.dht_peers.clear()
            for status, n in dht.per_status.items():
                self.dht_peers.labels(node, status).set(n)
            for i, (direction, result) in enumerate(QUERY_KEYS):
                v, p = dht.queries[i], self.q_last[i]
                self.queries.labels(node, direction, result).inc(v - p if v >= p else v)
                self.q_last[i] = v
            for action, n in (("added", dht.added), ("removed", dht.removed), ("status_changed", dht.changed)):
                self.updates.labels(node, action).inc(n)
        for guard in self.labels.card.guards():
            seen = self.folded_seen[guard.label]
            if guard.folded != seen:
                self.folded.labels(guard.label).inc(guard.folded - seen)
                self.folded_seen[guard.label] = guard.folded

    def render(self) -> bytes:
        return generate_latest(self.registry)
