"""Protobuf base-128 varints: the one encoder and the one reader for every place that walks raw
protobuf bytes (delimited trace files, the protobuf exposition, a live segment's kind)."""

from __future__ import annotations

from collections.abc import Iterator

MAX_VARINT = 10  # bytes of the longest 64-bit varint


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def read_varint(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, bytes used) of the varint at pos; None when more bytes are needed; ValueError if malformed."""
    value = 0
    for i in range(MAX_VARINT):
        if pos + i >= len(data):
            return None
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    raise ValueError(f"varint longer than {MAX_VARINT} bytes")


def delimited(payload: bytes) -> bytes:
    """payload behind its length, as a varint (protobuf's delimited form)."""
    return encode_varint(len(payload)) + payload


def iter_delimited(body: bytes | bytearray | memoryview) -> Iterator[bytes]:
    """The payloads of a whole delimited body; ValueError when it is cut short or malformed."""
    pos = 0
    while pos < len(body):
        head = read_varint(body, pos)
        if head is None:
            raise ValueError(f"a length cut short at byte {pos}")
        length, used = head
        pos += used
        if pos + length > len(body):
            raise ValueError(f"a {length}-byte payload cut short at byte {pos}")
        yield bytes(body[pos : pos + length])
        pos += length
