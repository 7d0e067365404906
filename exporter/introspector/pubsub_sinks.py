"""Where traced pubsub events go: the three file forms, and a remote collector over libp2p.

- ``PBFileSink``: varint-delimited TraceEvents (go's PBTracer).
- ``JSONFileSink``: one JSON object per line (go's JSONTracer).
- ``TracedFileSink``: a gzip of varint-delimited TraceEvents (what ``traced`` stores).
- ``RemoteTracer``: go's RemoteTracer: a ``/libp2p/pubsub/tracer/1.0.0`` stream to a collector peer,
  carrying one gzip stream of varint-delimited TraceEventBatches, flushed after each batch. Batches
  collect up to ``min_batch`` events or ``batch_window`` seconds, as in go. The buffer is bounded
  (go's 64K events); beyond it events are dropped and counted, never queued without bound.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from collections import deque
from typing import Any, BinaryIO

from exporter.protocol.pubsub_codec import TraceEvent, TraceEventBatch, delimit, event_to_json

log = logging.getLogger(__name__)
REMOTE_TRACER_PROTOCOL = "/libp2p/pubsub/tracer/1.0.0"
TRACE_BUFFER = 1 << 16  # go's TraceBufferSize
MIN_BATCH = 16  # go's MinTraceBatchSize


class _FileSink:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fh: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.events = 0

    def __call__(self, event: TraceEvent) -> None:
        self._fh.write(self.encode(event))
        self._fh.flush()
        self.events += 1

    def encode(self, event: TraceEvent) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> _FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PBFileSink(_FileSink):
    def encode(self, event: TraceEvent) -> bytes:
        return delimit(event)


class JSONFileSink(_FileSink):
    def encode(self, event: TraceEvent) -> bytes:
        return (event_to_json(event) + "\n").encode()


class TracedFileSink(_FileSink):
    """gzip of delimited events; each event is sync-flushed, so the file reads whole while written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self._gz = zlib.compressobj(wbits=31)

    def encode(self, event: TraceEvent) -> bytes:
        return self._gz.compress(delimit(event)) + self._gz.flush(zlib.Z_SYNC_FLUSH)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.write(self._gz.flush(zlib.Z_FINISH))
        super().close()


class GzipBatchWriter:
    """The remote tracer's byte stream: one gzip stream of delimited batches, sync-flushed per batch."""

    def __init__(self) -> None:
        self._gz = zlib.compressobj(wbits=31)

    def batch(self, events: list[TraceEvent]) -> bytes:
        payload = delimit(TraceEventBatch(batch=events))
        return self._gz.compress(payload) + self._gz.flush(zlib.Z_SYNC_FLUSH)

    def close(self) -> bytes:
        return self._gz.flush(zlib.Z_FINISH)


class RemoteTracer:
    """Send events to a collector peer over libp2p, like go's RemoteTracer (trio side).

    Call ``trace`` (the sink) on the trio thread; run ``run()`` in a nursery. Reconnects after
    ``retry_s`` when the collector is unreachable or the stream breaks (go waits a minute).
    """

    def __init__(
        self,
        host: Any,
        collector: Any,  # PeerInfo of the collector
        *,
        buffer: int = TRACE_BUFFER,
        min_batch: int = MIN_BATCH,
        batch_window: float = 1.0,
        retry_s: float = 60.0,
    ) -> None:
        self.host = host
        self.collector = collector
        self.buffer = buffer
        self.min_batch = min_batch
        self.batch_window = batch_window
        self.retry_s = retry_s
        self._events: deque[TraceEvent] = deque()
        self._wakeup: Any = None
        self.sent_events = 0
        self.sent_batches = 0
        self.dropped = 0
        self.streams_opened = 0
        self.errors = 0

    def __call__(self, event: TraceEvent) -> None:
        if len(self._events) >= self.buffer:
            self.dropped += 1
            return
        self._events.append(event)
        if self._wakeup is not None:
            self._wakeup.set()

    async def _open(self) -> Any:
        import trio

        while True:
            try:
                await self.host.connect(self.collector)
                stream = await self.host.new_stream(self.collector.peer_id, [REMOTE_TRACER_PROTOCOL])
                self.streams_opened += 1
                return stream
            except Exception as exc:
                self.errors += 1
                log.debug("remote tracer: cannot reach the collector: %r", exc)
                await trio.sleep(self.retry_s)

    async def run(self) -> None:
        """Forever: open a stream, then write batches to it; on a write error start a new stream."""
        import trio

        self._wakeup = trio.Event()
        if self._events:
            self._wakeup.set()
        while True:
            stream = await self._open()
            writer = GzipBatchWriter()
            try:
                while True:
                    await self._wakeup.wait()
                    self._wakeup = trio.Event()
                    with trio.move_on_after(self.batch_window):
                        while len(self._events) < self.min_batch:
                            await self._wakeup.wait()
                            self._wakeup = trio.Event()
                    batch = [self._events.popleft() for _ in range(len(self._events))]
                    if batch:
                        # Once compressed, a batch is in the gzip checksum: a write cut off by shutdown
                        # would lose it and make the trailer's CRC wrong, so it finishes (bounded).
                        with trio.CancelScope(shield=True), trio.move_on_after(max(2.0, self.batch_window)):
                            await stream.write(writer.batch(batch))
                            self.sent_batches += 1
                            self.sent_events += len(batch)
            except trio.Cancelled:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await self._finish(stream, writer)
                raise
            except Exception as exc:
                self.errors += 1
                log.debug("remote tracer: stream failed: %r", exc)
                with contextlib.suppress(Exception):
                    await stream.reset()

    async def flush(self) -> None:
        """Wake the writer now (tests, shutdown), without waiting for a full batch."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def _finish(self, stream: Any, writer: GzipBatchWriter) -> None:
        try:
            rest = [self._events.popleft() for _ in range(len(self._events))]
            if rest:
                await stream.write(writer.batch(rest))
                self.sent_batches += 1
                self.sent_events += len(rest)
            await stream.write(writer.close())
            await stream.close()
        except Exception as exc:
            log.debug("remote tracer: closing the stream failed: %r", exc)
