"""Segment framing against docs/protocol.md section 2, and damaged input as properties."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exporter.protocol import pb
from exporter.protocol.commands import response
from exporter.protocol.framing import (
    decode_segments,
    encode_file_segment,
    encode_segment,
    fnv1a32,
)

WORKED_EXAMPLE = bytes.fromhex("01000000a65a040511000000 0a0208012a0b0801220708c0a90710e807".replace(" ", ""))


def _hello_reply() -> pb.ServerMessage:
    cfg = pb.Configuration(retention_period_ms=120000, state_snapshot_interval_ms=1000)
    return response(1, ok=True, config=cfg)


def test_worked_example_bytes() -> None:
    assert encode_segment(_hello_reply()) == WORKED_EXAMPLE


def test_fnv_known_values() -> None:
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C  # published FNV-1a 32 test vector
    assert fnv1a32(b"foobar") == 0xBF9CF968


def test_decode_worked_example() -> None:
    out = decode_segments(WORKED_EXAMPLE)
    assert out.errors == []
    (msg,) = out.messages
    assert msg.response.id == 1
    assert msg.response.effective_config.state_snapshot_interval_ms == 1000


def _event(i: int) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    msg.event.type.name = "PeerConnecting"
    msg.event.ts = 1000 + i
    msg.event.content = json.dumps({"peerId": f"p{i}"})
    return msg


def test_many_segments_in_one_frame() -> None:
    frame = b"".join(encode_segment(_event(i)) for i in range(5))
    out = decode_segments(frame)
    assert [m.event.ts for m in out.messages] == [1000, 1001, 1002, 1003, 1004]


def test_bad_checksum_is_skipped_and_next_kept() -> None:
    segs = [bytearray(encode_segment(_event(i))) for i in range(3)]
    segs[1][5] ^= 0xFF  # checksum byte
    out = decode_segments(b"".join(segs))
    assert [m.event.ts for m in out.messages] == [1000, 1002]
    assert [e.reason for e in out.errors] == ["checksum"]


def test_hostile_length_is_an_error_not_an_allocation() -> None:
    frame = struct.pack("<III", 1, 0, 0xFFFFFFFF) + b"x" * 10
    out = decode_segments(frame, max_segment=1 << 20)
    assert out.messages == []
    assert out.errors[0].reason == "oversized"


def test_length_beyond_frame_is_truncated() -> None:
    seg = encode_segment(_event(0))
    out = decode_segments(seg[:-3])
    assert out.messages == [] and out.errors[0].reason == "truncated"


def test_valid_checksum_but_not_protobuf() -> None:
    payload = b"\xff\xff\xff"
    frame = struct.pack("<III", 1, fnv1a32(payload), len(payload)) + payload + encode_segment(_event(7))
    out = decode_segments(frame)
    assert [e.reason for e in out.errors] == ["protobuf"]
    assert [m.event.ts for m in out.messages] == [1007]


def test_wrong_version_header_skipped() -> None:
    seg = bytearray(encode_segment(_event(1)))
    seg[0] = 2
    out = decode_segments(bytes(seg) + encode_segment(_event(2)))
    assert [e.reason for e in out.errors] == ["version"]
    assert [m.event.ts for m in out.messages] == [1002]


messages = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(ids=messages, data=st.data())
def test_flipped_byte_loses_at_most_the_hit_segment(ids: list[int], data: st.DataObject) -> None:
    segs = [encode_segment(_event(i)) for i in ids]
    frame = bytearray(b"".join(segs))
    pos = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    frame[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
    hit, start = 0, 0
    for hit, seg in enumerate(segs):  # noqa: B007 - the index is the result
        if start + len(seg) > pos:
            break
        start += len(seg)
    out = decode_segments(bytes(frame))
    got = [m.event.ts - 1000 for m in out.messages]
    expected = [i for k, i in enumerate(ids) if k != hit]
    # Every intact segment survives; the hit one may still parse if the flip was harmless.
    assert all(i in got for i in expected)
    assert len(got) <= len(ids)


@settings(max_examples=200, deadline=None)
@given(ids=messages, cut=st.integers(min_value=0, max_value=10_000))
# Segments of 54,54,54,54,54,53 bytes cut inside the fifth: the sixth is not whole even though 53 bytes remain.
@example(ids=[10, 10, 10, 10, 10, 0], cut=269)
def test_truncation_keeps_whole_segments(ids: list[int], cut: int) -> None:
    segs = [encode_segment(_event(i)) for i in ids]
    frame = b"".join(segs)
    cut = min(cut, len(frame))
    out = decode_segments(frame[:cut])
    # Count the segments that lie wholly before the cut, stopping at the first that does not fit:
    # everything after a cut segment is gone with it.
    whole, size = 0, 0
    for seg in segs:
        if size + len(seg) > cut:
            break
        whole += 1
        size += len(seg)
    assert len(out.messages) == whole
    assert (cut == size) == (not out.errors)


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=2048))
def test_garbage_never_raises(garbage: bytes) -> None:
    out = decode_segments(garbage, max_segment=4096)
    for err in out.errors:
        assert err.reason in {"checksum", "truncated", "oversized", "version", "protobuf"}
    out = decode_segments(garbage, versioned=False, max_segment=4096)
    assert isinstance(out.messages, list)


@settings(max_examples=100, deadline=None)
@given(ids=messages, length=st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 1 << 24]), at=st.data())
def test_hostile_length_mid_stream(ids: list[int], length: int, at: st.DataObject) -> None:
    segs = [bytearray(encode_segment(_event(i))) for i in ids]
    k = at.draw(st.integers(min_value=0, max_value=len(segs) - 1))
    struct.pack_into("<I", segs[k], 8, length)
    out = decode_segments(b"".join(segs), max_segment=1 << 20)
    got = [m.event.ts - 1000 for m in out.messages]
    assert got == [i for j, i in enumerate(ids) if j != k]
    assert out.errors and out.errors[0].reason in {"oversized", "truncated"}


def test_file_segments_have_no_version() -> None:
    seg = encode_file_segment(_event(3))
    assert len(seg) == 8 + len(_event(3).SerializeToString())
    assert decode_segments(seg, versioned=False).messages[0].event.ts == 1003


def test_corrupt_length_reaching_exactly_the_end_does_not_hide_the_last_segment() -> None:
    """Found by hypothesis: a flipped length byte made a segment appear to end at the frame's end."""
    segs = [encode_segment(_event(i)) for i in (10, 100, 0, 101)]
    frame = bytearray(b"".join(segs))
    at = len(segs[0]) + len(segs[1])
    struct.pack_into("<I", frame, at + 8, len(frame) - at - 12)  # stated length runs to the very end
    out = decode_segments(bytes(frame))
    assert [m.event.ts - 1000 for m in out.messages] == [10, 100, 101]
    assert [e.reason for e in out.errors] == ["checksum"]


@pytest.mark.parametrize("versioned", [True, False])
def test_a_length_pointing_at_a_later_boundary_loses_only_its_segment(versioned: bool) -> None:
    """A corrupted length that lands exactly on a later segment's start must not skip the ones between."""
    enc = encode_segment if versioned else encode_file_segment
    segs = [bytearray(enc(_event(i))) for i in range(5)]
    size = 12 if versioned else 8
    struct.pack_into("<I", segs[1], size - 4, len(segs[1]) - size + len(segs[2]) + len(segs[3]))  # ends at segs[4]
    out = decode_segments(b"".join(segs), versioned=versioned)
    assert [m.event.ts - 1000 for m in out.messages] == [0, 2, 3, 4]
    assert [(e.reason, e.skipped) for e in out.errors] == [("checksum", len(segs[1]))]


def test_hostile_resync_work_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Headers at every offset that claim a long payload with a wrong checksum: before the budget,
    resynchronising hashed ~60 kB per offset (O(n^2): seconds for 1 MiB, hours for a 16 MiB frame)."""
    from exporter.protocol import framing

    hashed = [0]
    real = framing.fnv1a32

    def counting(data: bytes) -> int:
        hashed[0] += len(data)
        return real(data)

    monkeypatch.setattr(framing, "fnv1a32", counting)
    size = 256 * 1024
    for versioned, unit in ((True, struct.pack("<III", 1, 0, 60000)), (False, struct.pack("<II", 0, 60000))):
        hashed[0] = 0
        data = (unit * (size // len(unit) + 1))[:size]
        out = decode_segments(data, versioned=versioned)
        assert out.messages == [] and out.errors
        assert sum(e.skipped for e in out.errors) == size  # every byte accounted for as skipped
        assert hashed[0] <= 5 * size + (1 << 20), hashed[0]  # the budget (4x + 1 MiB) plus one pass
