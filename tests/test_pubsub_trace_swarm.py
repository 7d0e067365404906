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
