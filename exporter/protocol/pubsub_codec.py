"""Encodings of go-libp2p-pubsub trace events: varint-delimited protobuf and the JSON tracer's lines.

The protobuf forms carry no checksum, so a length cannot be trusted by itself: a length over the cap,
past the end of the input or a payload that is not a plausible event is one damaged stretch, and in
files the decoder resynchronises on the next offset where a plausible record starts (Go always writes
an event's ``type`` first, tag byte 0x08; a batch starts with its first event, tag byte 0x0a). The
scan is bounded, like the capture framing's, so hostile input costs linear time. Nothing is
allocated for a claimed length before the bytes are at hand.

The JSON tracer is Go's ``encoding/json`` over the gogo-generated struct: keys are the proto field
names, bytes are standard base64, the type enum is its number, unset fields are left out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from exporter.protocol import pubsub_trace_pb2 as tpb
from exporter.protocol.framing import SegmentError
from exporter.protocol.varint import MAX_VARINT, encode_varint, read_varint

if TYPE_CHECKING:
    # The protobuf stubs type a message's descriptors as the pure-Python or the upb (C) class.
    from google._upb._message import FieldDescriptor as _UpbFieldDescriptor

    _Field = FieldDescriptor | _UpbFieldDescriptor

TraceEvent = tpb.TraceEvent
TraceEventBatch = tpb.TraceEventBatch

MAX_EVENT = 1 << 20  # tracestat's and traced's reader limit for one event
MAX_BATCH = 1 << 22  # traced's limit for one batch on a remote-tracer stream
EVENT_TAG = 0x08  # field 1 (type), varint
BATCH_TAG = 0x0A  # field 1 (batch), length-delimited
RESYNC_FACTOR = 4
RESYNC_FLOOR = 1 << 20
_TYPES = frozenset(TraceEvent.Type.values())
# Names the JSON tracer used before the rename to On{New,Closed}OutboundStream (same field numbers).
JSON_ALIASES = {"addPeer": "onNewOutboundStream", "removePeer": "onClosedOutboundStream"}


def delimit(message: Message | bytes) -> bytes:
    """One varint length-delimited record, as Go's protoio DelimitedWriter writes it."""
    payload = message if isinstance(message, bytes) else message.SerializeToString()
    return encode_varint(len(payload)) + payload


def plausible_event(event: TraceEvent) -> bool:
    """What every Go tracer sets: a known type, the tracing peer and a timestamp."""
    return event.HasField("type") and event.type in _TYPES and event.HasField("peerID") and event.HasField("timestamp")


def parse_record(payload: bytes) -> list[TraceEvent]:
    """The events of one delimited record: a TraceEvent, or a TraceEventBatch (told apart by the first tag)."""
    if payload[:1] == bytes([BATCH_TAG]):
        batch = TraceEventBatch()
        batch.ParseFromString(payload)
        events = list(batch.batch)
        if not events or not all(plausible_event(e) for e in events):
            raise DecodeError("batch without plausible events")
        return events
    event = TraceEvent()
    event.ParseFromString(payload)
    if not plausible_event(event):
        raise DecodeError("event without a known type, peerID and timestamp")
    return [event]


class DelimitedDecoder:
    """Incremental reader of varint-delimited TraceEvents or TraceEventBatches.

    Feed bytes as they come; ``drain`` yields events and SegmentErrors. ``resync`` (files) keeps going
    after damage by scanning for the next plausible record; without it (live streams, where the peer
    is simply broken) the first damage stops the decoder. The buffer never holds more than one
    record's cap plus a varint beyond what was fed.
    """

    def __init__(self, *, max_record: int = MAX_EVENT, resync: bool = True, budget_base: int = 0) -> None:
        self.max_record = max_record
        self.resync = resync
        self.offset = 0  # absolute offset of _buf[0]
        self.failed = False  # non-resync decoder hit damage and stopped
        self.skipped_bytes = 0
        self.records = 0  # whole records decoded (events, or batches)
        self._buf = bytearray()
        self._scanning = False
        self._budget = RESYNC_FLOOR + budget_base

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if not self.failed:
            self._buf += data
            self._budget += RESYNC_FACTOR * len(data)

    def drain(self, *, final: bool = False) -> Iterator[TraceEvent | SegmentError]:
        """Everything decodable from the bytes fed so far; ``final`` means no more will come."""
        buf = self._buf
        while buf and not self.failed:
            step = self._step(final)
            if step is None:
                break
            yield from step
        if final and buf and not self.failed:
            yield self._skip(len(buf), "truncated", f"{len(buf)} trailing bytes do not make a whole record")

    def _skip(self, n: int, reason: str, detail: str) -> SegmentError:
        err = SegmentError(self.offset, reason, detail, n)
        del self._buf[:n]
        self.offset += n
        self.skipped_bytes += n
        return err

    def _drop_one(self) -> None:
        """Move the scan on: past this byte, and past every start whose tag byte cannot follow."""
        buf = self._buf
        tags = [i for i in (buf.find(EVENT_TAG, 1), buf.find(BATCH_TAG, 1)) if i > 0]
        n = max(1, min(tags) - len(encode_varint(self.max_record))) if tags else max(1, len(buf) - MAX_VARINT)
        del buf[:n]
        self.offset += n
        self.skipped_bytes += n

    def _damage(self, reason: str, detail: str) -> list[TraceEvent | SegmentError]:
        """Report damage at the current offset; then stop, or scan on from the next byte."""
        err = SegmentError(self.offset, reason, detail, 0)
        if not self.resync:
            self.failed = True
            self.skipped_bytes += len(self._buf)
            self._buf.clear()
            return [err]
        self._scanning = True
        self._drop_one()
        return [err]

    def _step(self, final: bool) -> list[TraceEvent | SegmentError] | None:
        buf = self._buf
        try:
            head = read_varint(buf, 0)
        except ValueError as exc:
            if self._scanning:
                self._drop_one()
                return []
            return self._damage("varint", str(exc))
        if head is None:
            return None  # more bytes needed (or, when final, the tail is reported by drain)
        length, used = head
        if length > self.max_record or length == 0:
            if self._scanning:
                self._drop_one()
                return []
            what = f"length {length} exceeds cap {self.max_record}" if length else "zero-length record"
            return self._damage("oversized" if length else "protobuf", what)
        if self._scanning and (len(buf) <= used or buf[used] not in (EVENT_TAG, BATCH_TAG)):
            if len(buf) <= used and not final:
                return None
            self._drop_one()
            return []
        if len(buf) < used + length:
            if not final:
                return None
            if self._scanning:
                self._drop_one()
                return []
            return self._damage("truncated", f"length {length} but only {len(buf) - used} bytes left")
        if self._scanning:
            if self._budget < length:
                return [self._skip(len(buf), "resync", "scan budget spent; rest of input skipped")]
            self._budget -= length
        payload = bytes(buf[used : used + length])
        try:
            events = parse_record(payload)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            if self._scanning:
                self._drop_one()
                return []
            return self._damage("protobuf", f"record of {length} bytes does not parse: {exc}")
        self._scanning = False
        self.records += 1
        del buf[: used + length]
        self.offset += used + length
        return list(events)


def iter_delimited(
    data: bytes, *, max_record: int = MAX_EVENT, base_offset: int = 0
) -> Iterator[TraceEvent | SegmentError]:
    """Events and skipped stretches of a whole delimited buffer (a PB tracer file's content)."""
    dec = DelimitedDecoder(max_record=max_record)
    dec.offset = base_offset
    dec.feed(data)
    yield from dec.drain(final=True)


# --- JSON tracer -------------------------------------------------------------------------------


def _to_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fd in message.DESCRIPTOR.fields:
        if fd.is_repeated:
            values = list(getattr(message, fd.name))
            if values:
                out[fd.name] = [_value_to_json(fd, v) for v in values]
        elif message.HasField(fd.name):
            out[fd.name] = _value_to_json(fd, getattr(message, fd.name))
    return out


def _value_to_json(fd: _Field, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return _to_json(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value  # enum number, string, bool, int64: as encoding/json writes them


def event_to_json(event: TraceEvent) -> str:
    """One line of Go's JSON tracer (without the newline)."""
    return json.dumps(_to_json(event), separators=(",", ":"), ensure_ascii=False)


class JSONEventError(ValueError):
    """A JSON value that is not a TraceEvent."""


def _b64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JSONEventError(f"bad base64: {exc}") from exc


def _from_json(obj: Any, message: Message, path: str) -> None:
    if not isinstance(obj, dict):
        raise JSONEventError(f"{path or 'event'} is not an object")
    fields = message.DESCRIPTOR.fields_by_name
    members: dict[str, Any] = obj  # JSON object keys are strings
    for key, value in members.items():
        name = JSON_ALIASES.get(key, key) if message.DESCRIPTOR is TraceEvent.DESCRIPTOR else key
        fd = fields.get(name) or message.DESCRIPTOR.fields_by_camelcase_name.get(name)
        if fd is None or value is None:
            continue  # unknown keys (newer tracers) are ignored, as protobuf ignores unknown fields
        where = f"{path}.{name}" if path else name
        if fd.is_repeated:
            if not isinstance(value, list):
                raise JSONEventError(f"{where} is not a list")
            target = getattr(message, fd.name)
            for item in value:
                if fd.type == FieldDescriptor.TYPE_MESSAGE:
                    _from_json(item, target.add(), where)
                else:
                    target.append(_scalar(fd, item, where))
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            _from_json(value, getattr(message, fd.name), where)
            getattr(message, fd.name).SetInParent()
        else:
            setattr(message, fd.name, _scalar(fd, value, where))


def _scalar(fd: _Field, value: Any, where: str) -> Any:
    kind = fd.type
    if kind == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise JSONEventError(f"{where} is not a base64 string")
        return _b64(value)
    if kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise JSONEventError(f"{where} is not a string")
        return value
    if kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise JSONEventError(f"{where} is not a boolean")
        return value
    if kind == FieldDescriptor.TYPE_ENUM and (enum := fd.enum_type) is not None:
        if isinstance(value, str) and value in enum.values_by_name:
            return enum.values_by_name[value].number
        if isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
            return value
        raise JSONEventError(f"{where}: unknown value {str(value)[:40]!r}")
    # int64 (timestamp): a number, or a decimal string as protojson writes it
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) <= 20:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < (1 << 63):
        return value
    raise JSONEventError(f"{where} is not a 64-bit integer")


def event_from_json(line: str | bytes) -> TraceEvent:
    """Parse one JSON tracer line; JSONEventError (a one-line reason) for anything else."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise JSONEventError(f"not JSON: {exc}") from exc
    event = TraceEvent()
    _from_json(obj, event, "")
    if not plausible_event(event):
        raise JSONEventError("event without a known type, peerID and timestamp")
    return event


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58(raw: bytes) -> str:
    """Base58btc, the text form of a peer id (trace events carry peer ids as raw bytes)."""
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def b58_decode(text: str) -> bytes:
    """The raw bytes of a base58btc peer id; empty for text that is not base58."""
    n = 0
    for ch in text:
        idx = _B58.find(ch)
        if idx < 0:
            return b""
        n = n * 58 + idx
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body
