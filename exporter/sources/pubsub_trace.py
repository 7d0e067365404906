"""Reading go-libp2p-pubsub trace files, in each form they are written.

- JSON tracer (``NewJSONTracer``): one JSON object per line.
- PB tracer (``NewPBTracer``): varint length-delimited TraceEvents.
- ``traced`` (go-libp2p-pubsub-tracer): rotating gzip files of varint-delimited TraceEvents (the
  collector unpacks the remote tracers' batches); a saved remote-tracer stream, a gzip of delimited
  TraceEventBatches, reads the same way because each record says which of the two it is.

The form is recognised from the first bytes. Files are read in chunks, so memory stays at one record's
cap however large the file; a damaged stretch is reported as a SegmentError and reading goes on with
the next intact record. A truncated gzip (``traced``'s ``current`` file while it is written) yields
every whole event and one error for the torn end. ``feed_trace_file`` streams a file into a hub.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from exporter.pipeline.hub import Hub
from exporter.pipeline.traces import TraceIntakeStats
from exporter.protocol.framing import SegmentError
from exporter.protocol.pubsub_codec import (
    MAX_BATCH,
    MAX_EVENT,
    DelimitedDecoder,
    JSONEventError,
    TraceEvent,
    event_from_json,
)

log = logging.getLogger(__name__)
CHUNK = 1 << 16
FEED_BATCH = 4096
POSITION_EVERY = (
    4096  # items between reports of the bytes read  # events handed to the hub at once while a file streams in
)
GZIP_MAGIC = b"\x1f\x8b"
MAX_JSON_LINE = 4 * MAX_EVENT  # base64 and key names make a JSON event up to ~4/3 larger, plus RPC lists


class TraceFileError(Exception):
    """The file cannot be opened or read at all (one line, for the user)."""


def sniff(head: bytes) -> str:
    """``gzip``, ``json`` or ``pb`` from a file's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    stripped = head.lstrip(b" \t\r\n")
    if stripped.startswith(b"{"):
        return "json"
    return "pb"


@dataclass
class ReadStats:
    """What one read produced: events, and damaged stretches by reason (for counting and one log line)."""

    events: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_error: SegmentError | None = None
    skipped_bytes: int = 0

    def note(self, item: TraceEvent | SegmentError) -> None:
        if isinstance(item, SegmentError):
            self.errors[item.reason] += 1
            self.skipped_bytes += item.skipped
            if self.first_error is None:
                self.first_error = item
        else:
            self.events += 1


def _iter_json(fh: BinaryIO, max_line: int) -> Iterator[TraceEvent | SegmentError]:
    offset = 0
    while True:
        line = fh.readline(max_line + 1)
        if not line:
            return
        start = offset
        offset += len(line)
        if len(line) > max_line and not line.endswith(b"\n"):
            rest = 0
            while True:  # pass over the rest of the long line without holding it
                more = fh.readline(CHUNK)
                rest += len(more)
                if not more or more.endswith(b"\n"):
                    break
            offset += rest
            yield SegmentError(start, "oversized", f"line of over {max_line} bytes", len(line) + rest)
            continue
        if not line.strip():
            continue
        try:
            yield event_from_json(line)
        except JSONEventError as exc:
            yield SegmentError(start, "json", str(exc)[:200], len(line))


def _iter_gzip(fh: BinaryIO, dec: DelimitedDecoder) -> Iterator[TraceEvent | SegmentError]:
    inflater = zlib.decompressobj(wbits=31)
    fed = False  # the current member has begun
    pending = b""
    read = 0
    while True:
        data = pending or fh.read(CHUNK)
        if not pending:
            read += len(data)
        pending = b""
        if not data:
            break
        fed = True
        try:
            out = inflater.decompress(data, CHUNK)
            while True:
                dec.feed(out)
                yield from dec.drain()
                if not inflater.unconsumed_tail:
                    break
                out = inflater.decompress(inflater.unconsumed_tail, CHUNK)
        except zlib.error as exc:
            yield from dec.drain(final=True)
            yield SegmentError(read, "gzip", f"compressed data is damaged: {exc}", 0)
            return
        if inflater.eof:
            pending = inflater.unused_data  # a following gzip member (concatenated files)
            inflater = zlib.decompressobj(wbits=31)
            fed = False
            if pending and not pending.startswith(GZIP_MAGIC):
                yield from dec.drain(final=True)
                yield SegmentError(read, "gzip", f"{len(pending)} bytes after the gzip stream are not gzip", 0)
                return
    yield from dec.drain(final=True)
    if fed and not inflater.eof:
        yield SegmentError(read, "truncated", "gzip stream ends before its trailer (file still being written?)", 0)


def iter_trace_stream(
    fh: BinaryIO, *, kind: str | None = None, max_record: int = MAX_BATCH
) -> Iterator[TraceEvent | SegmentError]:
    """Events and skipped stretches from an open binary file, in file order."""
    head = fh.peek(8)[:8] if hasattr(fh, "peek") else b""
    kind = kind or sniff(head)
    if kind == "json":
        yield from _iter_json(fh, MAX_JSON_LINE)
        return
    dec = DelimitedDecoder(max_record=max_record)
    if kind == "gzip":
        yield from _iter_gzip(fh, dec)
        return
    while True:
        data = fh.read(CHUNK)
        if not data:
            break
        dec.feed(data)
        yield from dec.drain()
    yield from dec.drain(final=True)


def iter_trace_file(
    path: str | os.PathLike[str],
    *,
    max_record: int = MAX_BATCH,
    position: Callable[[int], None] | None = None,
) -> Iterator[TraceEvent | SegmentError]:
    """Events and skipped stretches of one trace file (JSON, PB or gzip, recognised by content).

    ``position`` is told the bytes read so far every ``POSITION_EVERY`` items (a progress bar).
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; a generator owns it
    except OSError as exc:
        raise TraceFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        try:
            if position is None:
                yield from iter_trace_stream(fh, max_record=max_record)
                return
            for n, item in enumerate(iter_trace_stream(fh, max_record=max_record), 1):
                if n % POSITION_EVERY == 0:
                    position(fh.tell())
                yield item
        except OSError as exc:
            raise TraceFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_trace_file(path: str | os.PathLike[str], *, max_record: int = MAX_BATCH) -> tuple[list[TraceEvent], ReadStats]:
    """All events of a file plus what was skipped (tests and small files; the CLI streams)."""
    stats = ReadStats()
    events: list[TraceEvent] = []
    for item in iter_trace_file(path, max_record=max_record):
        stats.note(item)
        if not isinstance(item, SegmentError):
            events.append(item)
    return events, stats


def describe(path: str, stats: ReadStats) -> str:
    """One line about a read, naming the first damage (remote text escaped by repr)."""
    line = f"{path}: {stats.events} events"
    if stats.errors:
        kinds = ", ".join(f"{n} {reason}" for reason, n in sorted(stats.errors.items()))
        first = stats.first_error
        line += f"; skipped {sum(stats.errors.values())} damaged stretch(es) ({kinds})"
        if first is not None:
            line += f", first at offset {first.offset}: {first.detail!r}"
    return line


def feed_trace_file(hub: Hub, path: str, intake: TraceIntakeStats | None = None) -> ReadStats:
    """Stream one trace file into the hub's trace mappers and listeners; one log line, however damaged.

    A file that cannot be read at all is one error line, never an exception; its damaged stretches
    are counted into ``intake`` (exported with the pubsub metrics).
    """
    stats = ReadStats()
    batch: list[TraceEvent] = []
    try:
        for item in iter_trace_file(path):
            stats.note(item)
            if not isinstance(item, SegmentError):
                batch.append(item)
                if len(batch) >= FEED_BATCH:
                    hub.ingest_traces(path, batch)
                    batch = []
    except TraceFileError as exc:
        log.error("%s", exc)
    if batch:
        hub.ingest_traces(path, batch)
    hub.traces_ended(path)
    if intake is not None:
        intake.files += 1
        intake.file_errors.update(stats.errors)
    (log.warning if stats.errors else log.info)("%s", describe(path, stats))
    return stats
