"""Shed before parsing: a frame split into segments whose kind is read from the payload's first tags.

Under overload the parse is the cost: a State that is then superseded by a newer one should never be
parsed at all. So a live frame is split into its segments (header, checksum: C speed) and each
payload's kind is read from its top-level protobuf tags (the ServerMessage ``payload`` oneof's field
number, docs/protocol.md section 1: state 2, runtime 3, event 4, response 5, notice 6) without decoding the message.
States and events stay raw bytes in the buffer until their turn; anything else (command responses,
Runtimes, notices: rare, small, and needed at once during the handshake) is parsed here.

A frame with any damage (a bad header, a checksum that does not match, a payload whose tags do not
walk) is decoded by the full, resynchronising decoder instead, so damage is reported exactly as before.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import (
    PROTOCOL_VERSION,
    WIRE_HEADER,
    SegmentError,
    decode_segments,
    fnv1a32,
    parse_server_message,
)
from exporter.protocol.varint import read_varint

# The ServerMessage oneof ``payload``: field number -> kind (WhichOneof's names).
KINDS = {2: "state", 3: "runtime", 4: "event", 5: "response", 6: "notice"}
RAW_KINDS = frozenset(("state", "event"))  # kept unparsed until ingested


class RawSegment:
    """One intact segment not parsed yet: its kind, its payload, where it was in its frame."""

    __slots__ = ("arrived", "kind", "offset", "payload")

    def __init__(self, kind: str, payload: bytes, offset: int = 0, arrived: float = 0.0) -> None:
        self.kind = kind
        self.payload = payload
        self.offset = offset
        self.arrived = arrived  # monotonic time it was read off the socket (how far behind ingest is)

    def parse(self) -> pb.ServerMessage | SegmentError:
        """The message, or the error to report when the payload does not parse after all."""
        try:
            return parse_server_message(self.payload)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            return SegmentError(self.offset, "protobuf", f"payload of {len(self.payload)} bytes does not parse: {exc}")


Item = pb.ServerMessage | RawSegment


def kind_of(item: Item) -> str:
    """The payload kind of a parsed or raw message ("empty" when it carries none)."""
    if isinstance(item, RawSegment):
        return item.kind
    return item.WhichOneof("payload") or "empty"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it); IndexError past the end (the caller's "does not walk")."""
    head = read_varint(data, pos)
    if head is None:
        raise IndexError(pos)
    return head[0], pos + head[1]


def peek_kind(payload: bytes) -> str | None:
    """The ServerMessage's payload kind from its top-level tags, or None when they do not walk.

    Only the top level is walked (a State's body is skipped by its length), and the last oneof field
    wins, as it does in a parse."""
    kind = "empty"
    pos, end = 0, len(payload)
    try:
        while pos < end:
            tag, pos = _varint(payload, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 2:
                length, pos = _varint(payload, pos)
                pos += length
                if field in KINDS:
                    kind = KINDS[field]
            elif field in KINDS:
                return None  # a oneof message field with a scalar wire type: let the parser say so
            elif wire == 0:
                _, pos = _varint(payload, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                return None
    except (IndexError, ValueError):
        return None
    return kind if pos == end else None


def split_frame(data: bytes, max_segment: int, arrived: float = 0.0) -> tuple[list[Item], list[SegmentError]]:
    """A live frame's messages, States and events left raw; the full decoder's result on any damage."""
    out: list[Item] = []
    pos, end = 0, len(data)
    size = WIRE_HEADER.size
    while pos < end:
        if end - pos < size:
            return _full(data, max_segment)
        version, checksum, length = WIRE_HEADER.unpack_from(data, pos)
        start = pos + size
        if version != PROTOCOL_VERSION or length > max_segment or length > end - start:
            return _full(data, max_segment)
        payload = data[start : start + length]
        if fnv1a32(payload) != checksum:
            return _full(data, max_segment)
        kind = peek_kind(payload)
        if kind in RAW_KINDS:
            out.append(RawSegment(kind, payload, pos, arrived))
        else:
            try:
                out.append(parse_server_message(payload))
            except (DecodeError, RuntimeWarning, ValueError):
                return _full(data, max_segment)
        pos = start + length
    return out, []


def _full(data: bytes, max_segment: int) -> tuple[list[Item], list[SegmentError]]:
    result = decode_segments(data, versioned=True, max_segment=max_segment)
    return list(result.messages), result.errors
