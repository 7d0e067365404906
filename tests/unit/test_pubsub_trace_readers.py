"""Readers of go-libp2p-pubsub traces: each form round-trips, and damage costs only the damaged part."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import pytest
import trio

from exporter.introspector.pubsub_sinks import GzipBatchWriter, JSONFileSink, PBFileSink, TracedFileSink
from exporter.protocol.pubsub_codec import (
    DelimitedDecoder,
    JSONEventError,
    TraceEvent,
    delimit,
    encode_varint,
    event_from_json,
    event_to_json,
    iter_delimited,
)
from exporter.sources.pubsub_collector import TraceCollector
from exporter.sources.pubsub_trace import describe, read_trace_file, sniff

T = TraceEvent.Type
PEER = bytes.fromhex("0024080112201ef0") + b"\x01" * 30


def sample(n: int = 12) -> list[TraceEvent]:
    """Events of every shape, with bytes that are not UTF-8."""
    out = []
    for i in range(n):
        e = TraceEvent(type=i % 13, peerID=PEER, timestamp=1_700_000_000_000_000_000 + i)
        mid = b"\xff\x00" + bytes([i])
        kind = e.type
        if kind == T.PUBLISH_MESSAGE:
            e.publishMessage.SetInParent()
            e.publishMessage.messageID, e.publishMessage.topic = mid, "t"
        elif kind == T.REJECT_MESSAGE:
            e.rejectMessage.messageID, e.rejectMessage.reason, e.rejectMessage.topic = mid, "validation failed", "t"
        elif kind == T.DELIVER_MESSAGE:
            e.deliverMessage.messageID, e.deliverMessage.receivedFrom, e.deliverMessage.topic = mid, PEER, "t"
        elif kind == T.SEND_RPC:
            e.sendRPC.sendTo = PEER
            e.sendRPC.meta.subscription.add(subscribe=False, topic="t")
            e.sendRPC.meta.control.prune.add(topic="t", peers=[PEER])
            e.sendRPC.meta.control.idontwant.add(messageIDs=[mid])
        elif kind == T.JOIN:
            e.join.topic = "t"
        elif kind == T.LEAVE:
            e.leave.topic = "t"
        else:
            e.graft.SetInParent()  # any sub-message will do for the codec
        out.append(e)
    return out


def write_all(path: Path, sink_type: type, events: list[TraceEvent]) -> Path:
    with sink_type(path) as sink:
        for e in events:
            sink(e)
    return path


@pytest.mark.parametrize("sink_type", [PBFileSink, JSONFileSink, TracedFileSink])
def test_each_form_round_trips(tmp_path: Path, sink_type: type) -> None:
    events = sample(40)
    got, stats = read_trace_file(write_all(tmp_path / "f", sink_type, events))
    assert got == events and stats.events == 40 and not stats.errors


def test_sniff() -> None:
    assert sniff(b"\x1f\x8b\x08") == "gzip" and sniff(b'  {"type":1}') == "json" and sniff(b"\x20\x08") == "pb"


def test_gzip_of_batches_reads_too(tmp_path: Path) -> None:
    """A saved remote-tracer stream (batches, several gzip members) reads like a traced file."""
    events = sample(30)
    w = GzipBatchWriter()
    data = w.batch(events[:10]) + w.batch(events[10:20]) + w.close()
    data += gzip.compress(b"".join(delimit(e) for e in events[20:]))  # a second member: single events
    (tmp_path / "s.gz").write_bytes(data)
    assert read_trace_file(tmp_path / "s.gz")[0] == events


def test_json_matches_gos_encoding() -> None:
    """encoding/json over the gogo struct: proto field names, padded standard base64, enum as number."""
    e = sample(4)[3]
    peer = "ACQIARIgHvABAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
    assert event_to_json(e) == (
        f'{{"type":3,"peerID":"{peer}","timestamp":1700000000000000003,'
        f'"deliverMessage":{{"messageID":"/wAD","topic":"t","receivedFrom":"{peer}"}}}}'
    )


def test_json_accepts_older_and_protojson_spellings() -> None:
    old = event_from_json(
        '{"type":4,"peerID":"AAE=","timestamp":5,"addPeer":{"peerID":"AAI=","proto":"/meshsub/1.1.0"}}'
    )
    assert old.onNewOutboundStream.proto == "/meshsub/1.1.0" and old.onNewOutboundStream.peerID == b"\x00\x02"
    pj = event_from_json(
        '{"type":"DELIVER_MESSAGE","peerID":"AAE","timestamp":"5","deliverMessage":{"topic":"x"},"new":1}'
    )
    assert pj.type == T.DELIVER_MESSAGE and pj.timestamp == 5 and pj.peerID == b"\x00\x01"


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1,2]",
        '{"type":99,"peerID":"AAE=","timestamp":5}',
        '{"type":1,"peerID":"@@@","timestamp":5}',
        '{"type":1,"peerID":"AAE=","timestamp":"soon"}',
        '{"type":1,"peerID":"AAE=","timestamp":5,"rejectMessage":[]}',
        '{"type":1,"timestamp":5}',
        '{"type":1,"peerID":"AAE=","timestamp":5,"sendRPC":{"meta":{"messages":{"a":1}}}}',
        "[" * 100_000,
    ],
)
def test_bad_json_lines_are_one_line_errors(line: str) -> None:
    with pytest.raises(JSONEventError) as info:
        event_from_json(line)
    assert "\n" not in str(info.value)


def test_json_file_skips_bad_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    events = sample(6)
    lines = [event_to_json(e) for e in events]
    lines.insert(2, '{"type":1, broken')
    lines.insert(4, "x" * (5 << 20))  # over the line cap: skipped without holding it
    lines.insert(5, "")
    (tmp_path / "t.json").write_text("\n".join(lines) + "\n")
    got, stats = read_trace_file(tmp_path / "t.json")
    assert got == events
    assert stats.errors == {"json": 1, "oversized": 1}
    assert "2 damaged stretch(es)" in describe("t.json", stats)


def test_hostile_length_is_an_error_never_an_allocation() -> None:
    good = delimit(sample(1)[0])
    dec = DelimitedDecoder(resync=False)
    dec.feed(encode_varint(1 << 62) + b"\x08\x01")
    items = list(dec.drain())
    assert [i.reason for i in items] == ["oversized"] and dec.failed and dec.buffered == 0
    dec.feed(good)  # a failed stream decoder takes nothing more
    assert list(dec.drain(final=True)) == []
    items = list(iter_delimited(b"\xff" * 11 + good))
    assert [getattr(i, "reason", "event") for i in items] == ["varint", "event"]


def test_damage_in_the_middle_costs_only_the_damaged_record() -> None:
    events = sample(20)
    blob = b"".join(delimit(e) for e in events[:7])
    bad = bytearray(delimit(events[7]))
    bad[3:9] = b"\xff" * 6  # the record no longer parses
    blob += bytes(bad) + b"".join(delimit(e) for e in events[8:])
    items = list(iter_delimited(blob))
    got = [i for i in items if isinstance(i, TraceEvent)]
    errs = [i for i in items if not isinstance(i, TraceEvent)]
    assert got == events[:7] + events[8:] and len(errs) == 1 and errs[0].reason == "protobuf"


def test_truncated_files(tmp_path: Path) -> None:
    events = sample(30)
    pb = b"".join(delimit(e) for e in events)
    (tmp_path / "cut.pb").write_bytes(pb[:-5])
    got, stats = read_trace_file(tmp_path / "cut.pb")
    assert got == events[:-1] and stats.errors == {"truncated": 1}
    # traced's "current" file while it is being written: whole events, then one error for the torn end
    path = write_all(tmp_path / "t.gz", TracedFileSink, events)
    data = path.read_bytes()
    (tmp_path / "cut.gz").write_bytes(data[: len(data) * 2 // 3])
    got, stats = read_trace_file(tmp_path / "cut.gz")
    assert 0 < len(got) < 30 and got == events[: len(got)] and sum(stats.errors.values()) >= 1


def test_corrupt_gzip_keeps_what_came_before(tmp_path: Path) -> None:
    events = sample(30)
    path = write_all(tmp_path / "t.gz", TracedFileSink, events)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 40] = b"\x00" * 40
    (tmp_path / "bad.gz").write_bytes(bytes(data))
    got, stats = read_trace_file(tmp_path / "bad.gz")
    assert got == events[: len(got)] and len(got) < 30 and stats.errors


def test_garbage_and_a_gzip_bomb_stay_bounded(tmp_path: Path) -> None:
    (tmp_path / "rand.pb").write_bytes(bytes(range(256)) * 4000)
    got, stats = read_trace_file(tmp_path / "rand.pb")
    assert got == [] and stats.errors
    bomb = zlib.compressobj(wbits=31)
    (tmp_path / "bomb.gz").write_bytes(bomb.compress(b"\x00" * (64 << 20)) + bomb.flush())
    got, stats = read_trace_file(tmp_path / "bomb.gz")
    assert got == [] and stats.errors


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    from exporter.sources.pubsub_trace import TraceFileError

    with pytest.raises(TraceFileError, match="cannot read"):
        read_trace_file(tmp_path / "missing")


class FakeStream:
    """Just enough of a py-libp2p stream for the collector's reading loop."""

    def __init__(self, data: bytes, peer: str = "peerA", chunk: int = 7000) -> None:
        self._buf = io.BytesIO(data)
        self.chunk = chunk
        self.muxed_conn = type("C", (), {"peer_id": peer})()
        self.closed = self.was_reset = False

    async def read(self, n: int) -> bytes:
        await trio.sleep(0)
        return self._buf.read(min(n, self.chunk))

    async def close(self) -> None:
        self.closed = True

    async def reset(self) -> None:
        self.was_reset = True


def collect(*streams: FakeStream, **kw: int) -> tuple[TraceCollector, list[TraceEvent]]:
    got: list[TraceEvent] = []
    c = TraceCollector(lambda peer, events: got.extend(events), **kw)

    async def main() -> None:
        async with trio.open_nursery() as n:
            for s in streams:
                n.start_soon(c.handle_stream, s)

    trio.run(main)
    return c, got


def test_collector_reads_a_go_style_stream() -> None:
    events = sample(50)
    w = GzipBatchWriter()
    data = w.batch(events[:16]) + w.batch(events[16:]) + w.close()
    c, got = collect(FakeStream(data))
    assert got == events and c.stats.batches == 2 and not c.stats.errors


def test_collector_cuts_off_damaged_streams_only() -> None:
    events = sample(20)
    w = GzipBatchWriter()
    huge = zlib.compressobj(wbits=31)
    hostile = huge.compress(encode_varint(1 << 40) + b"\x00" * 100) + huge.flush()
    c, got = collect(
        FakeStream(w.batch(events) + w.close(), "good"),
        FakeStream(hostile, "hostile"),
        FakeStream(b"not gzip at all", "noise"),
    )
    assert got == events
    assert c.stats.errors == {"oversized": 1, "gzip": 1}
    assert c.stats.streams_active == 0


def test_collector_bounds_streams_per_peer() -> None:
    w = GzipBatchWriter()
    data = w.batch(sample(3)) + w.close()
    streams = [FakeStream(data, "same", chunk=1) for _ in range(3)]
    c, got = collect(*streams, max_streams_per_peer=2)
    # the third is admitted and the quietest of the peer's two is reset to make room (issue 25)
    assert c.stats.streams_refused == 0 and c.stats.streams_accepted == 3 and c.stats.errors["evicted"] == 1
    assert len(got) == 6 and sum(s.was_reset for s in streams) == 1
    assert c.stats.streams_active == 0 and not c.stats.per_peer_streams


def test_collector_refuses_only_when_nothing_can_make_room() -> None:
    w = GzipBatchWriter()
    c, _ = collect(FakeStream(w.batch(sample(1)) + w.close()), max_streams=0)
    assert c.stats.streams_refused == 1 and c.stats.streams_accepted == 0


def test_collector_notes_when_a_peers_last_stream_ended() -> None:
    w = GzipBatchWriter()
    c, _ = collect(FakeStream(w.batch(sample(2)) + w.close(), "gone-peer"))
    assert c.stats.gone(150.0) == []  # within the grace: go's tracer may be reconnecting
    ended = c.stats.ended["gone-peer"]
    assert c.stats.gone(150.0, now=ended + 151) == ["gone-peer"]
    assert c.stats.gone(150.0, now=ended + 999) == []  # reported once


# One line of go-libp2p-pubsub v0.19.0's JSONTracer (from a gossipsub-swarm run): SEND_RPC_COMPLETED,
# type 13, which releases before v0.15 did not have. It was once read as damage, and a remote-tracer
# batch holding one cut the whole stream off.
GO_SEND_RPC_COMPLETED = (
    '{"type":13,"peerID":"ACQIARIgQ/kChgoAv4XZJr5Yy6NHaSWIkAovHjuE9aiMfpgm4MM=","timestamp":1796584409538119930,'
    '"sendRPCCompleted":{"sendTo":"ACQIARIgsuV57WyA6x0IK6DzQ7oKwmlDwH7i5uv3SKCFctY2U48=",'
    '"meta":{"subscription":[{"subscribe":true,"topic":"gossipsub-swarm"}]},"writeDurationNanos":1833}}'
)


def test_send_rpc_completed_from_go_is_an_event_not_damage(tmp_path: Path) -> None:
    e = event_from_json(GO_SEND_RPC_COMPLETED)
    assert e.type == T.SEND_RPC_COMPLETED and e.sendRPCCompleted.writeDurationNanos == 1833
    assert event_to_json(e) == GO_SEND_RPC_COMPLETED  # byte for byte what go wrote
    (tmp_path / "go.pb").write_bytes(delimit(e) * 3)
    events, stats = read_trace_file(tmp_path / "go.pb")
    assert events == [e] * 3 and not stats.errors
    w = GzipBatchWriter()
    c, got = collect(FakeStream(w.batch([*sample(5), e]) + w.close()))
    assert got == [*sample(5), e] and not c.stats.errors


def test_send_rpc_completed_is_not_a_second_rpc() -> None:
    from exporter.mappers.pubsub import PubsubMetrics

    m = PubsubMetrics()
    m.ingest_all([event_from_json(GO_SEND_RPC_COMPLETED)])
    (node,) = m.nodes.values()
    assert not node.rpc and not node.published and m.events == {"SEND_RPC_COMPLETED": 1}
