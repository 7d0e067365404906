"""Capture files in the observer-toolkit format (docs/protocol.md section 4): read, write, summarise.

``u32 LE 1`` once, then ``u32 fnv1a32(payload) | u32 len | payload`` per ServerMessage. The reader
skips damaged stretches (reporting where and why) and still yields every intact message; a torn
last segment from an unclean stop is just one more skipped stretch.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from exporter.model.snapshot import snapshot_of
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import (
    DEFAULT_MAX_SEGMENT,
    PROTOCOL_VERSION,
    U32,
    SegmentError,
    encode_file_segment,
    iter_segments,
)


class CaptureError(Exception):
    """The file cannot be read as a capture at all."""


def iter_capture_bytes(
    data: bytes, *, max_segment: int = DEFAULT_MAX_SEGMENT
) -> Iterator[pb.ServerMessage | SegmentError]:
    if len(data) < U32.size:
        yield SegmentError(0, "truncated", f"file of {len(data)} bytes has no version header", len(data))
        return
    (version,) = U32.unpack_from(data, 0)
    if version != PROTOCOL_VERSION:
        yield SegmentError(0, "version", f"file version {version}, expected {PROTOCOL_VERSION}", 0)
    yield from iter_segments(data[U32.size :], versioned=False, max_segment=max_segment, base_offset=U32.size)


def iter_capture(
    path: str | os.PathLike[str], *, max_segment: int = DEFAULT_MAX_SEGMENT
) -> Iterator[pb.ServerMessage | SegmentError]:
    """Messages and skipped stretches of a capture file, in file order."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc.strerror or exc}") from exc
    yield from iter_capture_bytes(data, max_segment=max_segment)


class CaptureWriter:
    """Appends messages to a capture file; each segment is flushed whole, so a crash tears at most one."""

    def __init__(self, path: str | os.PathLike[str], *, exclusive: bool = False) -> None:
        """``exclusive``: FileExistsError rather than overwrite an existing file."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: BinaryIO = open(self.path, "xb" if exclusive else "wb")  # noqa: SIM115 - closed in close()
        self._fh.write(U32.pack(PROTOCOL_VERSION))
        self.bytes_written = U32.size
        self.messages = 0

    def write(self, message: pb.ServerMessage | bytes) -> None:
        segment = encode_file_segment(message)
        self._fh.write(segment)
        self._fh.flush()
        self.bytes_written += len(segment)
        self.messages += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_capture(path: str | os.PathLike[str], messages: list[pb.ServerMessage]) -> None:
    with CaptureWriter(path) as writer:
        for msg in messages:
            writer.write(msg)


@dataclass
class Summary:
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[SegmentError] = field(default_factory=list)
    first_ts: int = 0
    last_ts: int = 0
    runtime: pb.Runtime | None = None
    config: pb.Configuration | None = None
    last_state: pb.State | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _ts(msg: pb.ServerMessage) -> int:
    kind = msg.WhichOneof("payload")
    if kind == "state":
        return msg.state.instant_ts
    if kind == "event":
        return msg.event.ts
    return 0


def summarize(path: str | os.PathLike[str]) -> Summary:
    out = Summary()
    for item in iter_capture(path):
        if isinstance(item, SegmentError):
            out.errors.append(item)
            continue
        kind = item.WhichOneof("payload") or "empty"
        out.counts[kind] += 1
        ts = _ts(item)
        if ts:
            out.first_ts = min(out.first_ts, ts) if out.first_ts else ts
            out.last_ts = max(out.last_ts, ts)
        if kind == "runtime":
            out.runtime = item.runtime
        elif kind == "response" and item.response.HasField("effective_config"):
            out.config = item.response.effective_config
        elif kind == "state":
            out.last_state = item.state
    return out


def format_summary(path: str, s: Summary) -> str:
    lines = [f"{path}: {s.total} messages"]
    for kind in ("runtime", "response", "state", "event", "notice"):
        if s.counts.get(kind):
            lines.append(f"  {kind:<9} {s.counts[kind]}")
    if s.first_ts:
        span = (s.last_ts - s.first_ts) / 1000.0
        lines.append(f"time span: {span:.1f} s ({s.first_ts} .. {s.last_ts} ms since epoch)")
    if s.runtime is not None:
        rt = s.runtime
        lines.append(
            f"runtime: {rt.implementation or '?'} {rt.version or '?'} on {rt.platform or '?'}, peer {rt.peer_id or '?'}"
        )
        if rt.event_types:
            lines.append("  event types: " + ", ".join(t.name for t in rt.event_types))
    if s.config is not None:
        lines.append(
            f"config: interval {s.config.state_snapshot_interval_ms} ms, retention {s.config.retention_period_ms} ms"
        )
    if s.last_state is not None:
        snap = snapshot_of(s.last_state)
        open_conns = sum(1 for c in snap.conns.values() if not c.closed)
        streams = sum(len(c.streams) for c in snap.conns.values())
        dht_peers = len(snap.dht.peers) if snap.dht else 0
        buckets = len(snap.dht.bucket_cpls) if snap.dht else 0
        lines.append(
            f"last state: {len(snap.conns)} connections ({open_conns} open), {len(snap.peers)} peers, "
            f"{streams} streams, DHT {dht_peers} peers in {buckets} buckets"
        )
        ps = snap.peerstore
        if ps is not None:  # this project's extension; absent from 2020-schema captures
            with_addrs = "?" if ps.with_addrs is None else str(ps.with_addrs)
            lines.append(
                f"  peerstore: {ps.known} known peers ({with_addrs} with addresses), "
                f"{len(ps.protocols)} protocols and {len(ps.agents)} agents listed"
            )
    if s.errors:
        lines.append(f"skipped {len(s.errors)} damaged stretch(es):")
        for err in s.errors:
            lines.append(f"  offset {err.offset}: {err.reason}: {err.detail} ({err.skipped} bytes skipped)")
    return "\n".join(lines)
