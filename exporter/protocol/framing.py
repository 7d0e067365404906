"""Segment framing of server messages (docs/protocol.md sections 2 and 4).

On the wire a segment is ``u32 version | u32 fnv1a32(payload) | u32 len | payload``; in capture
files the version is written once at the start and each segment is ``u32 fnv1a32 | u32 len |
payload``. All integers are little-endian. Decoding never trusts a length beyond the bytes at hand
or beyond a cap, and one bad segment never hides the intact ones after it: after a damaged segment
the reader resynchronises on the next offset whose checksum verifies.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from exporter.protocol import introspection_pb2 as pb

_fast_fnv: Callable[[bytes], int] | None
try:
    from fnv_hash_fast import fnv1a_32 as _fast_fnv
except ImportError:  # pragma: no cover - the C helper is a declared dependency
    _fast_fnv = None

PROTOCOL_VERSION = 1
DEFAULT_MAX_SEGMENT = 8 * 1024 * 1024
WIRE_HEADER = struct.Struct("<III")  # version, checksum, length
FILE_HEADER = struct.Struct("<II")  # checksum, length
U32 = struct.Struct("<I")
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a32(data: bytes) -> int:
    """FNV-1a 32-bit hash, the protocol's payload checksum."""
    if _fast_fnv is not None:
        return int(_fast_fnv(data))
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def _payload(message: pb.ServerMessage | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def encode_segment(message: pb.ServerMessage | bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """Frame one server message for the wire (12-byte header)."""
    payload = _payload(message)
    return WIRE_HEADER.pack(version, fnv1a32(payload), len(payload)) + payload


def encode_file_segment(message: pb.ServerMessage | bytes) -> bytes:
    """Frame one server message for a capture file (8-byte header)."""
    payload = _payload(message)
    return FILE_HEADER.pack(fnv1a32(payload), len(payload)) + payload


@dataclass(frozen=True)
class SegmentError:
    """One stretch of input that was skipped: where, why, and a human sentence."""

    offset: int
    reason: str  # checksum, truncated, oversized, version, protobuf
    detail: str
    skipped: int = 0  # bytes passed over

    def __str__(self) -> str:
        return f"offset {self.offset}: {self.reason}: {self.detail}"


@dataclass
class DecodeResult:
    messages: list[pb.ServerMessage] = field(default_factory=list)
    errors: list[SegmentError] = field(default_factory=list)


def parse_server_message(payload: bytes) -> pb.ServerMessage:
    """Parse a payload, raising DecodeError for anything that is not a ServerMessage."""
    msg = pb.ServerMessage()
    msg.ParseFromString(payload)
    return msg


class _Layout:
    def __init__(self, versioned: bool) -> None:
        self.versioned = versioned
        self.size = WIRE_HEADER.size if versioned else FILE_HEADER.size

    def header(self, data: bytes | memoryview, pos: int) -> tuple[int, int, int]:
        if self.versioned:
            return WIRE_HEADER.unpack_from(data, pos)
        checksum, length = FILE_HEADER.unpack_from(data, pos)
        return PROTOCOL_VERSION, checksum, length


RESYNC_FACTOR = 2  # hash at most this many times the input's size while resynchronising ...
RESYNC_FLOOR = 1 << 20  # ... plus this much
CANDIDATE_FLOOR = 4096  # try at most this many offsets while resynchronising ...
CANDIDATE_PER_BYTES = 1024  # ... plus one per this many bytes of input


class _Budget:
    """The work the resynchronising scan may still do for one input: offsets tried and bytes hashed.

    Every candidate offset can claim a long payload, so an unbounded scan hashes O(n^2) bytes; and
    input made of one repeated header (``01 00 00 00`` or zeros) makes every few bytes a candidate
    that costs a Python-level check. Both are bounded linearly in the input's size, with small
    constants: past either budget the scan gives up and the rest of the input is skipped as one
    damaged stretch (counted), so a hostile frame costs milliseconds, not seconds.
    """

    __slots__ = ("candidates", "left")

    def __init__(self, size: int) -> None:
        self.left = RESYNC_FACTOR * size + RESYNC_FLOOR
        self.candidates = CANDIDATE_FLOOR + size // CANDIDATE_PER_BYTES

    @property
    def spent(self) -> bool:
        return self.left <= 0 or self.candidates <= 0


@functools.lru_cache(maxsize=16)
def _candidate_pattern(versioned: bool, max_segment: int) -> re.Pattern[bytes]:
    """Offsets whose header could be valid, found by the regex engine rather than a Python loop.

    A wire header starts with the version; in both layouts the length's high bytes are zero when the
    cap leaves them no room. Random damage rarely matches, so real captures resynchronise at C speed.
    """
    zero_high = max(0, (32 - max(1, max_segment).bit_length()) // 8)
    length = b"." * (4 - zero_high) + b"\\x00" * zero_high
    prefix = re.escape(U32.pack(PROTOCOL_VERSION)) if versioned else b""
    return re.compile(b"(?=" + prefix + b"." * 4 + length + b")", re.DOTALL)


def _claimed_end(data: bytes, pos: int, layout: _Layout, max_segment: int) -> int | None:
    """Where the segment whose header is at pos would end, when that header is possible at all."""
    end = len(data)
    if end - pos < layout.size:
        return None
    version, _, length = layout.header(data, pos)
    if version != PROTOCOL_VERSION or length > max_segment or length > end - pos - layout.size:
        return None
    return pos + layout.size + length


def _verifies(data: bytes, pos: int, layout: _Layout, max_segment: int, budget: _Budget) -> bool:
    """True when a whole segment with a matching checksum starts at pos."""
    if _claimed_end(data, pos, layout, max_segment) is None:
        return False
    _, checksum, length = layout.header(data, pos)
    if length > budget.left:
        budget.left = 0
        return False
    budget.left -= length
    start = pos + layout.size
    return fnv1a32(data[start : start + length]) == checksum


def _resync(data: bytes, pos: int, stop: int, layout: _Layout, max_segment: int, budget: _Budget) -> int:
    """The first offset in (pos, stop) where an intact segment starts, or stop.

    ``stop`` is the damaged header's stated end when an intact segment starts there (a corrupted length
    can still land on a later boundary, so what lies before it is searched), else the end of the data.
    Hashing is what costs, so candidates are hashed in order of promise: first those whose claimed end
    is the end of the data or another possible header (real segments chain; random offsets in a
    payload rarely do), then, before the first intact one found that way, the others. A candidate
    that claims to run past an intact stop is no segment of this stretch.
    """
    end = len(data)
    deferred: list[int] = []
    found: int | None = None
    for match in _candidate_pattern(layout.versioned, max_segment).finditer(data, pos + 1, stop):
        if budget.spent:
            break
        budget.candidates -= 1
        probe = match.start()
        claimed = _claimed_end(data, probe, layout, max_segment)
        if claimed is None or (stop < end and claimed > stop):
            continue
        if claimed == end or _claimed_end(data, claimed, layout, max_segment) is not None:
            if _verifies(data, probe, layout, max_segment, budget):
                found = probe
                break
        else:
            deferred.append(probe)
    limit = stop if found is None else found
    for probe in deferred:  # all before limit; only those that end by it can be the first intact one
        if budget.spent:
            break
        claimed = _claimed_end(data, probe, layout, max_segment)
        if claimed is not None and claimed <= limit and _verifies(data, probe, layout, max_segment, budget):
            return probe
    return limit


def iter_segments(
    data: bytes,
    *,
    versioned: bool = True,
    max_segment: int = DEFAULT_MAX_SEGMENT,
    base_offset: int = 0,
) -> Iterator[pb.ServerMessage | SegmentError]:
    """Yield each message, or a SegmentError for each stretch that had to be skipped."""
    layout = _Layout(versioned)
    data = bytes(data)
    budget = _Budget(len(data))
    pos = 0
    end = len(data)
    while pos < end:
        at = base_offset + pos
        if end - pos < layout.size:
            yield SegmentError(at, "truncated", f"{end - pos} trailing bytes, header needs {layout.size}", end - pos)
            return
        version, checksum, length = layout.header(data, pos)
        start = pos + layout.size
        error: SegmentError | None = None
        trusted_length = False
        if length > max_segment:
            error = SegmentError(at, "oversized", f"length {length} exceeds cap {max_segment}")
        elif length > end - start:
            error = SegmentError(at, "truncated", f"length {length} but only {end - start} bytes left")
        elif version != PROTOCOL_VERSION:
            error = SegmentError(at, "version", f"protocol version {version}, expected {PROTOCOL_VERSION}")
        else:
            payload = data[start : start + length]
            actual = fnv1a32(payload)
            if actual != checksum:
                error = SegmentError(at, "checksum", f"header says {checksum:#010x}, payload hashes to {actual:#010x}")
            else:
                trusted_length = True
                try:
                    yield parse_server_message(payload)
                    pos = start + length
                    continue
                except (DecodeError, RuntimeWarning, ValueError) as exc:
                    error = SegmentError(at, "protobuf", f"payload of {length} bytes does not parse: {exc}")
        # Skip by the stated length only when the checksum vouched for it. Otherwise the damaged stretch
        # ends at the first intact segment after pos: an intact one at the stated end bounds the
        # scan (and is where it ends once the budget is spent), but a flipped length byte can point past
        # intact segments to a later boundary. A length ending exactly at the end of the data proves nothing.
        nxt = start + length
        if not trusted_length:
            stop = nxt if nxt < end and _verifies(data, nxt, layout, max_segment, budget) else end
            nxt = _resync(data, pos, stop, layout, max_segment, budget)
        nxt = max(nxt, pos + 1) if nxt < end else end
        yield SegmentError(error.offset, error.reason, error.detail, nxt - pos)
        pos = nxt


def decode_segments(
    data: bytes,
    *,
    versioned: bool = True,
    max_segment: int = DEFAULT_MAX_SEGMENT,
    base_offset: int = 0,
) -> DecodeResult:
    """Decode all segments of one WebSocket message (or of a capture body)."""
    out = DecodeResult()
    for item in iter_segments(data, versioned=versioned, max_segment=max_segment, base_offset=base_offset):
        if isinstance(item, SegmentError):
            out.errors.append(item)
        else:
            out.messages.append(item)
    return out
