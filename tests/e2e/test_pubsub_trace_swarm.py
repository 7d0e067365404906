"""A real gossipsub swarm traced four ways: live to the collector, and to PB, JSON and traced-gzip files.

Three py-libp2p gossipsub nodes on 127.0.0.1 trace to the exporter's collector over a real libp2p
connection (``/libp2p/pubsub/tracer/1.0.0``, gzip of delimited batches) and, at the same time, to
the three file forms. All four give back exactly the events the tracers emitted.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("libp2p")

import trio

from exporter.protocol.pubsub_codec import TraceEvent
from exporter.sources.pubsub_trace import read_trace_file
from tests.support.pubsub_swarm import TOPIC, run_traced_swarm

T = TraceEvent.Type
N, MESSAGES = 3, 6


@pytest.fixture(scope="module")
def swarm_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("pubsub-swarm")
    return trio.run(functools.partial(run_traced_swarm, tmp, n=N, messages=MESSAGES))


def keyed(events: list[TraceEvent]) -> Counter[bytes]:
    return Counter(e.SerializeToString(deterministic=True) for e in events)


def test_every_hook_is_installed(swarm_run) -> None:  # type: ignore[no-untyped-def]
    for hooks in swarm_run.hooks:
        assert {
            "Pubsub.push_msg",
            "Pubsub.notify_subscriptions",
            "Pubsub.write_msg",
            "Pubsub.recv_rpc",
            "GossipSub.mesh",
            "GossipSub.join",
            "GossipSub.leave",
            "GossipSub.add_peer",
        } <= set(hooks)


def test_the_swarm_did_its_work(swarm_run) -> None:  # type: ignore[no-untyped-def]
    assert swarm_run.published == MESSAGES
    assert swarm_run.received == N * MESSAGES - 1  # one node rejects one message
    kinds = Counter(T.Name(e.type) for e in swarm_run.emitted)
    for kind in (
        "PUBLISH_MESSAGE",
        "DELIVER_MESSAGE",
        "DUPLICATE_MESSAGE",
        "REJECT_MESSAGE",
        "JOIN",
        "LEAVE",
        "GRAFT",
        "PRUNE",
        "ON_NEW_OUTBOUND_STREAM",
        "RECV_RPC",
        "SEND_RPC",
    ):
        assert kinds[kind] > 0, kind
    assert kinds["PUBLISH_MESSAGE"] == MESSAGES
    assert kinds["DELIVER_MESSAGE"] == N * MESSAGES - 1  # the origin's own delivery counts, as in go
    assert kinds["JOIN"] == N and kinds["LEAVE"] == 1


def test_events_look_like_a_go_nodes(swarm_run) -> None:  # type: ignore[no-untyped-def]
    ids = set(swarm_run.peer_ids)
    publishes = {e.publishMessage.messageID: e for e in swarm_run.emitted if e.type == T.PUBLISH_MESSAGE}
    for e in swarm_run.emitted:
        assert e.peerID in ids and e.timestamp > 1_600_000_000 * 10**9  # raw peer id bytes, unix ns
    for e in swarm_run.emitted:
        if e.type == T.DELIVER_MESSAGE:
            d = e.deliverMessage
            assert d.topic == TOPIC and d.messageID in publishes and d.receivedFrom in ids
            assert e.timestamp >= publishes[d.messageID].timestamp
            # go's default message id: the origin's peer id then the seqno
            assert d.messageID.startswith(publishes[d.messageID].peerID)
    rejects = [e.rejectMessage for e in swarm_run.emitted if e.type == T.REJECT_MESSAGE]
    assert {r.reason for r in rejects} == {"validation failed"} and all(r.topic == TOPIC for r in rejects)
    sends = [e.sendRPC for e in swarm_run.emitted if e.type == T.SEND_RPC]
    assert any(s.meta.messages for s in sends) and any(s.meta.subscription for s in sends)
    assert any(s.meta.control.graft or s.meta.control.ihave for s in sends)


def test_live_collector_got_every_event(swarm_run) -> None:  # type: ignore[no-untyped-def]
    stats = swarm_run.collector.stats
    assert stats.streams_accepted == N and not stats.errors and stats.streams_active == 0
    assert keyed(swarm_run.collected) == keyed(swarm_run.emitted)
    assert sum(r.dropped for r in swarm_run.remotes) == 0


@pytest.mark.parametrize("kind", ["pb", "json", "gzip"])
def test_files_give_the_same_events(swarm_run, kind: str) -> None:  # type: ignore[no-untyped-def]
    events: list[TraceEvent] = []
    for path in swarm_run.files[kind]:
        got, stats = read_trace_file(path)
        assert not stats.errors, (path, stats)
        events.extend(got)
    assert keyed(events) == keyed(swarm_run.emitted) == keyed(swarm_run.collected)


def test_files_keep_each_nodes_order(swarm_run) -> None:  # type: ignore[no-untyped-def]
    for pb_path, json_path, gz_path in zip(*(swarm_run.files[k] for k in ("pb", "json", "gzip"))):
        a, b, c = (read_trace_file(p)[0] for p in (pb_path, json_path, gz_path))
        assert a == b == c and len(a) > 0
        assert [e.timestamp for e in a] == sorted(e.timestamp for e in a)


def test_tracer_files_are_go_formats(swarm_run) -> None:  # type: ignore[no-untyped-def]
    json_line = Path(swarm_run.files["json"][0]).read_text().splitlines()[0]
    assert json_line.startswith('{"type":') and '"peerID":"' in json_line  # encoding/json field names
    assert Path(swarm_run.files["gzip"][0]).read_bytes()[:2] == b"\x1f\x8b"


# -- metrics from the same events, checked against tracestat's definitions -----------------------


def metrics_from(events: list[TraceEvent]):  # type: ignore[no-untyped-def]
    from exporter.mappers.pubsub import PubsubMetrics
    from tests.support.reference import MetricsWriter

    m = PubsubMetrics(topics={TOPIC})
    m.ingest_all(events)
    m.flush()
    out = MetricsWriter()
    m.collect_into(out)
    return m, {(s.name, tuple(sorted(s.labels.items()))): s.value for f in out.metrics() for s in f.samples}


def test_counts_match_tracestat(swarm_run) -> None:  # type: ignore[no-untyped-def]
    from exporter.mappers.pubsub import b58
    from tests.support.tracestat import TraceStat

    ts = TraceStat()
    for e in swarm_run.collected:
        ts.add(e)
    _, got = metrics_from(swarm_run.collected)
    for peer, counts in ts.per_peer.items():
        node = (("node", b58(peer)), ("topic", TOPIC))
        assert got.get(("libp2p_pubsub_delivered_messages_total", node), 0) == counts["deliver"]
        assert got.get(("libp2p_pubsub_duplicate_messages_total", node), 0) == counts["duplicate"]
        assert got.get(("libp2p_pubsub_topic_msg_published_total", node), 0) == counts["publish"]
        rejected = sum(
            v
            for (name, labels), v in got.items()
            if name == "libp2p_pubsub_rejected_messages_total" and dict(labels)["node"] == b58(peer)
        )
        assert rejected == counts["reject"]
    assert ts.totals["deliver"] == N * MESSAGES - 1 and ts.totals["duplicate"] > 0 and ts.totals["reject"] > 0


def test_propagation_delays_match_tracestat(swarm_run) -> None:  # type: ignore[no-untyped-def]
    """tracestat's per-message delays, less the origin's own delivery, are the histogram's samples."""
    from exporter.mappers.pubsub import PROPAGATION_BUCKETS
    from exporter.model.histogram import Histogram
    from tests.support.tracestat import TraceStat

    ts = TraceStat()
    for e in swarm_run.collected:
        ts.add(e)
    origin = {e.publishMessage.messageID: e.peerID for e in swarm_run.collected if e.type == T.PUBLISH_MESSAGE}
    expected = Histogram(PROPAGATION_BUCKETS)
    for mid, delays in ts.delays().items():
        assert sorted(ts.stamps[mid])[0][2] == "publish"  # t0 is the publish, as tracestat assumes
        expected.observe_all(dt / 1e9 for dt, peer, kind in delays if kind == "deliver" and peer != origin[mid])
    _, got = metrics_from(swarm_run.collected)
    topic = (("topic", TOPIC),)
    assert (
        got[("libp2p_pubsub_propagation_delay_seconds_count", topic)] == expected.count == N * MESSAGES - 1 - MESSAGES
    )
    assert abs(got[("libp2p_pubsub_propagation_delay_seconds_sum", topic)] - expected.total) < 1e-9
    for le, count in expected.cumulative():
        assert got[("libp2p_pubsub_propagation_delay_seconds_bucket", (("le", le), ("topic", TOPIC)))] == count
    cdf = ts.cdf_ms()  # tracestat's printed CDF also counts the origins' own deliveries
    assert cdf[-1][1] == expected.count + MESSAGES


def test_reach_and_mesh_from_the_live_run(swarm_run) -> None:  # type: ignore[no-untyped-def]
    _m, got = metrics_from(swarm_run.collected)
    topic = (("topic", TOPIC),)
    assert got[("libp2p_pubsub_message_reach_ratio_count", topic)] == MESSAGES
    # one message was rejected by one of three nodes: its reach is 2/3, every other one's is 1
    assert got[("libp2p_pubsub_message_reach_ratio_bucket", (("le", "0.6"), *topic))] == 0
    assert got[("libp2p_pubsub_message_reach_ratio_bucket", (("le", "0.7"), *topic))] == 1
    assert got[("libp2p_pubsub_traced_nodes", ())] == N
    meshes = {dict(k)["node"]: v for (name, k), v in got.items() if name == "libp2p_pubsub_mesh_peer_counts"}
    assert len(meshes) == N - 1 and all(v >= 1 for v in meshes.values())  # node 0 left the topic


@pytest.mark.parametrize("kind", ["pb", "json", "gzip"])
def test_files_give_the_same_metrics_as_the_live_session(swarm_run, kind: str) -> None:  # type: ignore[no-untyped-def]
    events = [e for path in swarm_run.files[kind] for e in read_trace_file(path)[0]]
    live = metrics_from(swarm_run.collected)[1]
    from_files = metrics_from(events)[1]
    ignore = {"libp2p_pubsub_tracked_messages"}
    want = {k: v for k, v in live.items() if k[0] not in ignore}
    assert {k: v for k, v in from_files.items() if k[0] not in ignore} == pytest.approx(want, rel=1e-12)


# -- message traces over OTLP -----------------------------------------------------------------


def spans_over_otlp(receiver, events: list[TraceEvent], ratio: float = 1.0):  # type: ignore[no-untyped-def]
    from exporter.sinks.otel.config import TracingConfig
    from exporter.sinks.otel.pubsub import PubsubSpans

    before = len(receiver.spans())
    sink = PubsubSpans(TracingConfig(endpoint=receiver.endpoint, protocol="http/protobuf"), ratio=ratio)
    sink.on_events(events)
    assert sink.flush(10)
    sink.shutdown()
    return receiver.spans()[before:], sink.stats


def test_one_trace_per_message_over_otlp(swarm_run, http_receiver) -> None:  # type: ignore[no-untyped-def]
    from exporter.sinks.otel.pubsub import root_span_id, trace_id_of

    spans, stats = spans_over_otlp(http_receiver, swarm_run.collected)
    roots = [s for s in spans if s.span.name == "pubsub.publish"]
    delivers = [s for s in spans if s.span.name == "pubsub.deliver"]
    dups = [s for s in spans if s.span.name == "pubsub.duplicate"]
    kinds = Counter(T.Name(e.type) for e in swarm_run.collected)
    assert len(roots) == MESSAGES and len(delivers) == kinds["DELIVER_MESSAGE"]
    assert len(dups) == kinds["DUPLICATE_MESSAGE"] > 0 and stats.exported == len(spans)
    by_trace = {s.span.trace_id: s for s in roots}
    for root in roots:
        mid = bytes.fromhex(root.attrs["messaging.message.id"])
        assert root.span.trace_id == trace_id_of(mid).to_bytes(16, "big")
        assert root.span.span_id == root_span_id(mid).to_bytes(8, "big") and not root.span.parent_span_id
        assert root.attrs["messaging.destination.name"] == TOPIC
    for child in delivers + dups:
        root = by_trace[child.span.trace_id]  # every delivery joins its message's trace
        assert child.span.parent_span_id == root.span.span_id
        assert child.span.end_time_unix_nano >= child.span.start_time_unix_nano
        if "libp2p.pubsub.delay_ms" in child.attrs:  # from the publish to the delivery ...
            assert child.span.start_time_unix_nano == root.span.start_time_unix_nano
        else:  # ... or, when the delivery came in before its publish (another stream), an instant
            assert child.attrs["libp2p.pubsub.publish_seen"] is False
            assert child.span.start_time_unix_nano == child.span.end_time_unix_nano
    assert sum("libp2p.pubsub.delay_ms" in c.attrs for c in delivers) > 0


def test_spans_agree_whatever_the_order_and_sampling_is_per_message(swarm_run, http_receiver) -> None:  # type: ignore[no-untyped-def]
    live, _ = spans_over_otlp(http_receiver, swarm_run.collected)
    from_file = [e for path in swarm_run.files["pb"] for e in read_trace_file(path)[0]]
    replayed, _ = spans_over_otlp(http_receiver, list(reversed(from_file)))

    def ids(spans):  # type: ignore[no-untyped-def]
        return sorted((s.span.trace_id, s.span.span_id, s.span.parent_span_id, s.span.name) for s in spans)

    assert ids(live) == ids(replayed)
    half, stats = spans_over_otlp(http_receiver, swarm_run.collected, ratio=0.5)
    traces = {s.span.trace_id for s in half}
    for t in traces:  # a sampled message keeps all its spans
        assert sum(1 for s in half if s.span.trace_id == t) == sum(1 for s in live if s.span.trace_id == t)
    assert stats.sampled_out["pubsub"] + len(half) == len(live)
