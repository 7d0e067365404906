"""The floor's node: frame check + parse, the Tracker pass, totals, and a render from prebuilt bytes.

See ``floor.py`` for what the pass reads and keeps. Here the pass's Step is folded into plain totals
(dicts of ints, a few bucket arrays), and ``render`` writes every sample of the node from cached
``name{labels} `` prefixes and HELP/TYPE headers, formatting only the values.
"""

from __future__ import annotations

import struct

from fnv_hash_fast import fnv1a_32

from bench.floor import (
    STATUS,
    Hist,
    LabelCache,
    Step,
    Tracker,
    hist_of,
)
from exporter import __version__
from exporter.model.histogram import (
    AGE_BUCKETS,
    CONNECTION_DURATION_BUCKETS,
    HANDSHAKE_LATENCY_BUCKETS,
    LATENCY_BUCKETS,
    STREAM_DURATION_BUCKETS,
)
from exporter.protocol import introspection_pb2 as pb

HEADER = struct.Struct("<III")


def decode(segment: bytes) -> pb.ServerMessage:
    """One wire segment: header, checksum, parse. The unavoidable decoding work."""
    _version, checksum, length = HEADER.unpack_from(segment)
    payload = segment[12 : 12 + length]
    if len(payload) != length or fnv1a_32(payload) != checksum:
        raise ValueError("bad segment")
    return pb.ServerMessage.FromString(payload)


# name -> (type, help). The floor's own short HELP texts; names, types and labels are ours.
FAMILIES: dict[str, tuple[str, str]] = {
    "libp2p_exporter_up": ("gauge", "1 when the node's data is current."),
    "libp2p_exporter_last_snapshot_timestamp_seconds": ("gauge", "instant_ts of the last State."),
    "libp2p_exporter_snapshots": ("counter", "States accepted."),
    "libp2p_exporter_messages": ("counter", "Server messages decoded, by kind."),
    "libp2p_exporter_snapshots_dropped": ("counter", "States ignored."),
    "libp2p_exporter_segment_errors": ("counter", "Segments skipped."),
    "libp2p_exporter_command_errors": ("counter", "ERR answers."),
    "libp2p_exporter_node_restarts": ("counter", "Restarts detected."),
    "libp2p_node_info": ("gauge", "The node."),
    "libp2p_introspection_snapshot_duration_seconds": ("gauge", "snapshot_duration_ms."),
    "libp2p_introspection_interval_seconds": ("gauge", "Push interval."),
    "libp2p_introspection_retention_seconds": ("gauge", "Retention."),
    "libp2p_connections": ("gauge", "Connections by status."),
    "libp2p_peers": ("gauge", "Peers with an open connection."),
    "libp2p_swarm_connections_opened": ("counter", "Connections opened."),
    "libp2p_swarm_connections_closed": ("counter", "Connections closed."),
    "libp2p_swarm_connection_duration_seconds": ("histogram", "Closed connections' lifetime."),
    "libp2p_swarm_handshake_latency_seconds": ("histogram", "Handshake latency."),
    "libp2p_peers_connected": ("counter", "Peers connected."),
    "libp2p_peers_disconnected": ("counter", "Peers disconnected."),
    "libp2p_connection_latency_seconds": ("gaugehistogram", "Open connections' latency."),
    "libp2p_connection_age_seconds": ("gaugehistogram", "Open connections' age."),
    "libp2p_streams": ("gauge", "Streams by status."),
    "libp2p_streams_referenced": ("gauge", "Streams listed by id only."),
    "libp2p_streams_opened": ("counter", "Streams opened."),
    "libp2p_streams_closed": ("counter", "Streams closed."),
    "libp2p_stream_duration_seconds": ("histogram", "Closed streams' lifetime."),
    "libp2p_traffic_bytes": ("counter", "Node bytes."),
    "libp2p_traffic_packets": ("counter", "Node packets."),
    "libp2p_bandwidth_bytes_per_second": ("gauge", "Node bandwidth."),
    "libp2p_protocol_traffic_bytes": ("counter", "Stream bytes by protocol."),
    "libp2p_transport_traffic_bytes": ("counter", "Connection bytes by transport."),
    "libp2p_dht_enabled": ("gauge", "DHT enabled."),
    "libp2p_dht_k": ("gauge", "DHT k."),
    "libp2p_dht_alpha": ("gauge", "DHT alpha."),
    "libp2p_dht_beta": ("gauge", "DHT beta."),
    "libp2p_dht_disjoint_paths": ("gauge", "DHT disjoint paths."),
    "libp2p_dht_buckets": ("gauge", "Buckets."),
    "libp2p_dht_bucket_peers": ("gauge", "Peers per bucket and status."),
    "libp2p_dht_peers": ("gauge", "Peers by status."),
    "libp2p_dht_queries": ("counter", "DHT queries."),
    "libp2p_dht_routing_table_updates": ("counter", "Routing-table changes."),
    "libp2p_events_malformed": ("counter", "Malformed events."),
    "libp2p_exporter_build_info": ("gauge", "Version."),
    "libp2p_exporter_nodes": ("gauge", "Nodes."),
    "libp2p_exporter_label_values_folded": ("counter", "Folded label values."),
    "libp2p_exporter_scrape_duration_seconds": ("gauge", "Scrape time."),
}
CONN5 = ("dir", "transport", "security", "muxer", "ip_version")
SEGMENT_REASONS = ("checksum", "truncated", "oversized", "protobuf", "version")
QUERY_KEYS = tuple((d, r) for d in ("inbound", "outbound") for r in ("success", "error", "timeout"))


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Writer:
    """Caches every series prefix and family header as text; a render only formats numbers."""

    def __init__(self, base: tuple[tuple[str, str], ...]) -> None:
        self.base = base
        self._prefix: dict[tuple[str, tuple[str, ...]], str] = {}
        self._headers: dict[str, str] = {}

    def header(self, family: str, suffix: str = "") -> str:
        key = family + suffix
        text = self._headers.get(key)
        if text is None:
            typ, doc = FAMILIES[family]
            shown = family + suffix if suffix else family + ("_total" if typ == "counter" else "")
            if suffix:
                typ = "gauge"
            elif typ == "gaugehistogram":
                typ = "histogram"
            text = f"# HELP {shown} {doc}\n# TYPE {shown} {typ}\n"
            self._headers[key] = text
        return text

    def prefix(self, name: str, names: tuple[str, ...], values: tuple[str, ...]) -> str:
        key = (name, values)
        text = self._prefix.get(key)
        if text is None:
            pairs = sorted((*self.base, *zip(names, values)))
            text = name + "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs) + "} "
            self._prefix[key] = text
        return text

    def hist(
        self, out: list[str], name: str, names: tuple[str, ...], values: tuple[str, ...], h: Hist, gauge: bool
    ) -> None:
        bucket = name + "_bucket"
        running = 0
        for bound, n in zip(h.bounds, h.counts):
            running += n
            out += (self.prefix(bucket, (*names, "le"), (*values, repr(float(bound)))), repr(float(running)), "\n")
        running += h.counts[-1]
        out += (self.prefix(bucket, (*names, "le"), (*values, "+Inf")), repr(float(running)), "\n")
        if not gauge:
            out += (self.prefix(name + "_count", names, values), repr(float(h.count)), "\n")
            out += (self.prefix(name + "_sum", names, values), repr(float(h.total)), "\n")


class FloorNode:
    """One node's floor: ``ingest`` a framed message, ``render`` its exposition (with the globals)."""

    def __init__(self, name: str, labels: LabelCache) -> None:
        self.labels = labels
        self.tracker = Tracker(labels)
        self.w = Writer((("node", name),))
        self.gw = Writer(())
        self.messages: dict[str, int] = {}
        self.dropped = {"duplicate": 0, "out_of_order": 0}
        self.runtime: tuple[str, str, str, str] | None = None
        self.config: tuple[int, int] | None = None
        self.last: Step | None = None
        self.node_last = [0, 0, 0, 0]
        self.node_tot: list[int] | None = None
        self.opened: dict[tuple[str, ...], int] = {}
        self.closed: dict[tuple[str, ...], int] = {}
        self.duration: dict[tuple[str, ...], Hist] = {}
        self.handshake: dict[tuple[str, ...], Hist] = {}
        self.joined = self.left = 0
        self.s_opened: dict[tuple[str, str], int] = {}
        self.s_closed: dict[tuple[str, str], int] = {}
        self.s_duration: dict[str, Hist] = {}
        self.proto_bytes: dict[tuple[str, str], int] = {}
        self.transport_bytes: dict[tuple[str, str], int] = {}
        self.q_last = [0] * 6
        self.q_tot = [0] * 6
        self.updates = [0, 0, 0]
        self.latency = Hist(LATENCY_BUCKETS)
        self.age = Hist(AGE_BUCKETS)

    def ingest(self, segment: bytes) -> None:
        msg = decode(segment)
        kind = msg.WhichOneof("payload") or "empty"
        self.messages[kind] = self.messages.get(kind, 0) + 1
        if kind == "state":
            self._state(msg.state)
        elif kind == "runtime":
            rt = msg.runtime
            self.runtime = (rt.implementation, rt.version, rt.platform, rt.peer_id)
        elif kind == "response" and msg.response.HasField("effective_config"):
            cfg = msg.response.effective_config
            self.config = (cfg.state_snapshot_interval_ms, cfg.retention_period_ms)

    def _state(self, state: pb.State) -> None:
        last_ts = self.tracker.last_ts
        ts = state.instant_ts
        if ts and ts <= last_ts:
            self.dropped["duplicate" if ts == last_ts else "out_of_order"] += 1
            return
        step = self.tracker.step(state)
        assert step is not None
        self.last = step
        if step.traffic is not None:
            tot = self.node_tot or [0, 0, 0, 0]
            for i in range(4):
                v, p = step.traffic[i], self.node_last[i]
                tot[i] += v - p if v >= p else v
                self.node_last[i] = v
            self.node_tot = tot
        for labels, hs in step.opened:
            self.opened[labels] = self.opened.get(labels, 0) + 1
            if hs is not None:
                key = labels[1:4]
                h = self.handshake.get(key) or self.handshake.setdefault(key, Hist(HANDSHAKE_LATENCY_BUCKETS))
                h.observe(hs)
        for labels, dur in step.closed:
            self.closed[labels] = self.closed.get(labels, 0) + 1
            if dur is not None:
                h = self.duration.get(labels) or self.duration.setdefault(labels, Hist(CONNECTION_DURATION_BUCKETS))
                h.observe(dur)
        self.joined += step.joined
        self.left += step.left
        for key2 in step.s_opened:
            self.s_opened[key2] = self.s_opened.get(key2, 0) + 1
        for proto, sdir, dur in step.s_closed:
            k = (proto, sdir)
            self.s_closed[k] = self.s_closed.get(k, 0) + 1
            if dur is not None:
                h = self.s_duration.get(proto) or self.s_duration.setdefault(proto, Hist(STREAM_DURATION_BUCKETS))
                h.observe(dur)
        for k, v in step.proto_bytes.items():
            self.proto_bytes[k] = self.proto_bytes.get(k, 0) + v
        for k, v in step.transport_bytes.items():
            self.transport_bytes[k] = self.transport_bytes.get(k, 0) + v
        self.latency = hist_of(LATENCY_BUCKETS, step.latencies)
        self.age = hist_of(AGE_BUCKETS, step.ages)
        if step.dht is not None:
            for i, v in enumerate(step.dht.queries):
                p = self.q_last[i]
                self.q_tot[i] += v - p if v >= p else v
                self.q_last[i] = v
            self.updates[0] += step.dht.added
            self.updates[1] += step.dht.removed
            self.updates[2] += step.dht.changed

    def render(self, with_globals: bool = True) -> bytes:
        """The node's samples (and the process-wide ones) in the text format, from cached prefixes."""
        w, out, f = self.w, [], float
        P, H = w.prefix, w.header

        def one(family: str, sample: str, names: tuple[str, ...], values: tuple[str, ...], value: float) -> None:
            out.extend((H(family), P(sample, names, values), repr(f(value)), "\n"))

        def many(family: str, sample: str, names: tuple[str, ...], items: list[tuple[tuple[str, ...], float]]) -> None:
            if items:
                out.append(H(family))
                for values, value in items:
                    out.extend((P(sample, names, values), repr(f(value)), "\n"))

        step = self.last
        one("libp2p_exporter_up", "libp2p_exporter_up", (), (), 1.0 if step is not None else 0.0)
        if step is not None and step.instant_ts:
            one(
                "libp2p_exporter_last_snapshot_timestamp_seconds",
                "libp2p_exporter_last_snapshot_timestamp_seconds",
                (),
                (),
                step.instant_ts / 1000.0,
            )
        accepted = self.messages.get("state", 0) - sum(self.dropped.values())
        one("libp2p_exporter_snapshots", "libp2p_exporter_snapshots_total", (), (), accepted)
        many(
            "libp2p_exporter_messages",
            "libp2p_exporter_messages_total",
            ("kind",),
            [((k,), n) for k, n in sorted(self.messages.items())],
        )
        many(
            "libp2p_exporter_snapshots_dropped",
            "libp2p_exporter_snapshots_dropped_total",
            ("reason",),
            [((k,), n) for k, n in self.dropped.items()],
        )
        many(
            "libp2p_exporter_segment_errors",
            "libp2p_exporter_segment_errors_total",
            ("reason",),
            [((r,), 0) for r in SEGMENT_REASONS],
        )
        one("libp2p_exporter_command_errors", "libp2p_exporter_command_errors_total", (), (), 0)
        one("libp2p_exporter_node_restarts", "libp2p_exporter_node_restarts_total", (), (), 0)
        if self.runtime is not None:
            rt = tuple(v or "unknown" for v in self.runtime)
            one("libp2p_node_info", "libp2p_node_info", ("implementation", "version", "platform", "peer_id"), rt, 1.0)
        if step is not None:
            self._render_state(step, out, one, many)
        if self.config is not None:
            one(
                "libp2p_introspection_interval_seconds",
                "libp2p_introspection_interval_seconds",
                (),
                (),
                self.config[0] / 1000.0,
            )
            one(
                "libp2p_introspection_retention_seconds",
                "libp2p_introspection_retention_seconds",
                (),
                (),
                self.config[1] / 1000.0,
            )
        if with_globals:
            self._render_globals(out)
        return "".join(out).encode()

    def _render_state(self, step: Step, out: list[str], one, many) -> None:  # type: ignore[no-untyped-def]
        w = self.w
        if step.duration_ms:
            one(
                "libp2p_introspection_snapshot_duration_seconds",
                "libp2p_introspection_snapshot_duration_seconds",
                (),
                (),
                step.duration_ms / 1000.0,
            )
        many(
            "libp2p_connections",
            "libp2p_connections",
            ("status", "dir", "transport", "security", "muxer"),
            [((STATUS.get(st, "unknown"), *l4), n) for (st, l4), n in step.conns.items()],
        )
        one("libp2p_peers", "libp2p_peers", (), (), step.peers)
        many(
            "libp2p_swarm_connections_opened", "libp2p_swarm_connections_opened_total", CONN5, list(self.opened.items())
        )
        many(
            "libp2p_swarm_connections_closed", "libp2p_swarm_connections_closed_total", CONN5, list(self.closed.items())
        )
        for family, names, hists in (
            ("libp2p_swarm_connection_duration_seconds", CONN5, self.duration),
            ("libp2p_swarm_handshake_latency_seconds", CONN5[1:4], self.handshake),
        ):
            if hists:
                out.append(w.header(family))
                for values, h in hists.items():
                    w.hist(out, family, names, values, h, False)
        one("libp2p_peers_connected", "libp2p_peers_connected_total", (), (), self.joined)
        one("libp2p_peers_disconnected", "libp2p_peers_disconnected_total", (), (), self.left)
        for family, h in (
            ("libp2p_connection_latency_seconds", self.latency),
            ("libp2p_connection_age_seconds", self.age),
        ):
            out.append(w.header(family))
            w.hist(out, family, (), (), h, True)
            one_g = (("_gcount", float(h.count)), ("_gsum", h.total))
            for suffix, value in one_g:
                out.extend((w.header(family, suffix), w.prefix(family + suffix, (), ()), repr(value), "\n"))
        many(
            "libp2p_streams",
            "libp2p_streams",
            ("protocol", "dir", "status"),
            [((p, d, STATUS.get(st, "unknown")), n) for (p, d, st), n in step.streams.items()],
        )
        if step.referenced:
            one("libp2p_streams_referenced", "libp2p_streams_referenced", (), (), step.referenced)
        many("libp2p_streams_opened", "libp2p_streams_opened_total", ("protocol", "dir"), list(self.s_opened.items()))
        many("libp2p_streams_closed", "libp2p_streams_closed_total", ("protocol", "dir"), list(self.s_closed.items()))
        if self.s_duration:
            out.append(w.header("libp2p_stream_duration_seconds"))
            for proto, h in self.s_duration.items():
                w.hist(out, "libp2p_stream_duration_seconds", ("protocol",), (proto,), h, False)
        tot = self.node_tot
        if tot is not None:
            many(
                "libp2p_traffic_bytes",
                "libp2p_traffic_bytes_total",
                ("direction",),
                [(("in",), tot[0]), (("out",), tot[1])],
            )
            many(
                "libp2p_traffic_packets",
                "libp2p_traffic_packets_total",
                ("direction",),
                [(("in",), tot[2]), (("out",), tot[3])],
            )
        if step.traffic is not None:
            many(
                "libp2p_bandwidth_bytes_per_second",
                "libp2p_bandwidth_bytes_per_second",
                ("direction",),
                [(("in",), step.traffic[4]), (("out",), step.traffic[5])],
            )
        many(
            "libp2p_protocol_traffic_bytes",
            "libp2p_protocol_traffic_bytes_total",
            ("protocol", "direction"),
            list(self.proto_bytes.items()),
        )
        many(
            "libp2p_transport_traffic_bytes",
            "libp2p_transport_traffic_bytes_total",
            ("transport", "direction"),
            list(self.transport_bytes.items()),
        )
        d = step.dht
        if d is not None:
            one("libp2p_dht_enabled", "libp2p_dht_enabled", (), (), 1.0 if d.enabled else 0.0)
            for param, value in zip(("k", "alpha", "beta", "disjoint_paths"), d.params):
                one(f"libp2p_dht_{param}", f"libp2p_dht_{param}", (), (), value)
            one("libp2p_dht_buckets", "libp2p_dht_buckets", (), (), len(d.cpls))
            many("libp2p_dht_bucket_peers", "libp2p_dht_bucket_peers", ("cpl", "status"), list(d.per_bucket.items()))
            many("libp2p_dht_peers", "libp2p_dht_peers", ("status",), [((s,), n) for s, n in d.per_status.items()])
            many(
                "libp2p_dht_queries",
                "libp2p_dht_queries_total",
                ("direction", "result"),
                list(zip(QUERY_KEYS, self.q_tot)),
            )
            many(
                "libp2p_dht_routing_table_updates",
                "libp2p_dht_routing_table_updates_total",
                ("action",),
                list(zip((("added",), ("removed",), ("status_changed",)), self.updates)),
            )
        one("libp2p_events_malformed", "libp2p_events_malformed_total", (), (), 0)

    def _render_globals(self, out: list[str]) -> None:
        w = self.gw
        out.extend(
            (
                self.w.header("libp2p_exporter_build_info"),
                w.prefix("libp2p_exporter_build_info", ("version",), (__version__,)),
                "1.0\n",
            )
        )
        out.extend((self.w.header("libp2p_exporter_nodes"), w.prefix("libp2p_exporter_nodes", (), ()), "1.0\n"))
        out.append(self.w.header("libp2p_exporter_label_values_folded"))
        for guard in self.labels.card.guards():
            out.extend(
                (
                    w.prefix("libp2p_exporter_label_values_folded_total", ("label",), (guard.label,)),
                    repr(float(guard.folded)),
                    "\n",
                )
            )
        out.extend(
            (
                self.w.header("libp2p_exporter_scrape_duration_seconds"),
                w.prefix("libp2p_exporter_scrape_duration_seconds", (), ()),
                "0.0\n",
            )
        )
