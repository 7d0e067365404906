"""Shed before parsing (issue 20): a segment's kind is read from its first tags, States and events
stay raw until their turn, a newer State supersedes an older unparsed one, events keep their order."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.sources.buffer import BoundedBuffer
from exporter.sources.segments import RawSegment, kind_of, peek_kind, split_frame


def _msg(kind: str, ts: int = 1) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    msg.version.version = 1
    if kind == "state":
        msg.state.instant_ts = ts
        msg.state.subsystems.connections.add().id = b"c%d" % ts
    elif kind == "event":
        msg.event.type.name = f"E{ts}"
        msg.event.ts = ts
    elif kind == "runtime":
        msg.runtime.implementation = "x"
    elif kind == "response":
        msg.response.id = ts
    elif kind == "notice":
        msg.notice.kind = pb.ServerNotice.DISCARDING_EVENTS
    return msg


@pytest.mark.parametrize("kind", ["state", "event", "runtime", "response", "notice"])
def test_the_kind_is_read_from_the_tags_as_the_parser_would(kind: str) -> None:
    payload = _msg(kind).SerializeToString()
    assert peek_kind(payload) == kind == pb.ServerMessage.FromString(payload).WhichOneof("payload")


def test_field_order_and_repeats_follow_the_parser() -> None:
    state, event = _msg("state").SerializeToString(), _msg("event").SerializeToString()
    # Reversed order (the oneof before the version) and two oneof members: the last one wins.
    reversed_ = pb.ServerMessage(state=_msg("state").state).SerializeToString() + b"\x0a\x02\x08\x01"
    assert peek_kind(reversed_) == "state"
    both = state + event
    assert peek_kind(both) == pb.ServerMessage.FromString(both).WhichOneof("payload") == "event"
    assert peek_kind(b"") == "empty"
    assert peek_kind(b"\x0a\x02\x08\x01") == "empty"  # a version and nothing else
    unknown = b"\xf8\x06\x05" + state  # an unknown varint field (111) first: skipped
    assert peek_kind(unknown) == "state"
    for bad in (b"\x12\x7f", b"\x12", b"\x10\x01", b"\x0f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"):
        assert peek_kind(bad) is None, bad


def test_an_intact_frame_keeps_states_and_events_raw() -> None:
    msgs = [_msg("response", 7), _msg("event", 1), _msg("state", 2), _msg("runtime")]
    frame = b"".join(encode_segment(m) for m in msgs)
    items, errors = split_frame(frame, 1 << 20, arrived=5.0)
    assert not errors
    assert [kind_of(i) for i in items] == ["response", "event", "state", "runtime"]
    assert [isinstance(i, RawSegment) for i in items] == [False, True, True, False]
    raw = items[2]
    assert isinstance(raw, RawSegment) and raw.arrived == 5.0
    assert raw.parse() == msgs[2]


def test_a_damaged_frame_is_decoded_as_before() -> None:
    good = encode_segment(_msg("state", 3))
    bad = bytearray(encode_segment(_msg("state", 4)))
    bad[5] ^= 0xFF  # the checksum
    frame = bytes(bad) + good
    items, errors = split_frame(frame, 1 << 20)
    expected = decode_segments(frame, versioned=True, max_segment=1 << 20)
    assert items == expected.messages and errors == expected.errors and [e.reason for e in errors] == ["checksum"]


def test_a_raw_payload_that_does_not_parse_is_reported_at_its_turn() -> None:
    item = RawSegment("state", b"\x12\x03\xff\xff\xff", offset=24)  # walks, but the State is garbage
    err = item.parse()
    assert not isinstance(err, pb.ServerMessage) and err.reason == "protobuf" and err.offset == 24


def _raw(kind: str, ts: int) -> RawSegment:
    return RawSegment(kind, _msg(kind, ts).SerializeToString(), arrived=float(ts))


def test_a_newer_state_supersedes_the_unparsed_one_and_events_keep_their_order() -> None:
    dropped: Counter[str] = Counter()
    shed: Counter[str] = Counter()
    buf = BoundedBuffer(100, dropped, max_states=1, shed=shed)
    for item in (_raw("state", 1), _raw("event", 2), _raw("event", 3), _raw("state", 4), _raw("event", 5)):
        buf.put(item, 10)
    assert buf.oldest_state_arrival() == 4.0
    buf.put(_raw("state", 6), 10)
    assert dropped == shed == Counter(state=2)
    order = [(kind_of(i), int(i.arrived)) for i, _ in buf.items]  # type: ignore[union-attr]
    assert order == [("event", 2), ("event", 3), ("event", 5), ("state", 6)]
    # Events over the buffer are shed unparsed too; a parsed message dropped counts in dropped only.
    small = BoundedBuffer(2, dropped, shed=shed)
    small.put(_msg("runtime"))
    small.put(_raw("state", 7))
    small.put(_raw("event", 8))
    small.put(_msg("response"))  # full: the oldest (the parsed runtime) makes room
    assert shed == Counter(state=2, event=1) and dropped == Counter(state=2, event=1, runtime=1)
