"""Resynchronising after damage is bounded in offsets tried, not only in bytes hashed.

Input made of one repeated header (``01 00 00 00`` on the wire, zeros in a capture file) makes
nearly every offset a candidate; before the candidate budget a 1 MiB frame of them cost ~0.5 s of
CPU and a 16 MiB one several seconds, stalling every other target on the event loop.
"""

from __future__ import annotations

import struct

import pytest

from exporter.protocol import framing
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import decode_segments, encode_file_segment, encode_segment


def _event(i: int) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    msg.event.ts = 1000 + i
    msg.event.content = "{}"
    return msg


@pytest.mark.parametrize(
    ("versioned", "unit"),
    [(True, b"\x01\x00\x00\x00"), (False, b"\x00"), (True, struct.pack("<III", 1, 7, 1)), (False, b"\x07\x00")],
)
def test_offsets_tried_are_bounded_per_input_byte(
    monkeypatch: pytest.MonkeyPatch, versioned: bool, unit: bytes
) -> None:
    tried = [0]
    real = framing._verifies

    def counting(*args: object) -> bool:
        tried[0] += 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(framing, "_verifies", counting)
    size = 1 << 20
    data = (unit * (size // len(unit) + 1))[:size]
    out = decode_segments(data, versioned=versioned)
    assert out.messages == []
    assert sum(e.skipped for e in out.errors) == size  # every byte accounted for
    bound = framing.CANDIDATE_FLOOR + size // framing.CANDIDATE_PER_BYTES + 8
    assert tried[0] <= bound, (tried[0], bound)


@pytest.mark.parametrize("versioned", [True, False])
def test_garbage_between_segments_is_still_skipped_to_the_next_intact_one(versioned: bool) -> None:
    """The candidate filter must not hide intact segments: random-looking damage between two."""
    enc = encode_segment if versioned else encode_file_segment
    garbage = bytes((i * 97 + 13) % 251 for i in range(50_000))
    data = enc(_event(1)) + garbage + enc(_event(2)) + enc(_event(3))
    out = decode_segments(data, versioned=versioned)
    assert [m.event.ts for m in out.messages] == [1001, 1002, 1003]
    assert len(out.errors) == 1 and out.errors[0].skipped == len(garbage)


def test_a_small_cap_still_finds_segments_whose_length_has_high_bytes() -> None:
    """The filter's zero high bytes follow the cap: a 16 MiB+ cap lets three-byte lengths through."""
    big = pb.ServerMessage()
    big.event.content = "x" * (1 << 16)
    data = b"\xff" * 7 + encode_segment(big)
    out = decode_segments(data, max_segment=1 << 25)
    assert len(out.messages) == 1 and out.errors[0].skipped == 7
