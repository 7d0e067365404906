"""The hub side of a live session: buffered messages move into the hub one at a time, parsed only
now (a raw segment shed before its turn was never parsed), taking turns with every other session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from exporter.model.text import safe_text
from exporter.protocol.framing import SegmentError
from exporter.sources.segments import Item, RawSegment, kind_of

if TYPE_CHECKING:
    from exporter.pipeline.hub import Hub
    from exporter.pipeline.session import SessionStats
    from exporter.sources.buffer import BoundedBuffer
    from exporter.sources.fairness import IngestGate
    from exporter.sources.options import Recorder

log = logging.getLogger("exporter.sources.websocket")

# Frames (and messages) this big are decoded (ingested) on a worker thread, so that one 16 MiB State
# does not hold the event loop for its whole parse; smaller ones cost less than the hand-off.
OFFLOAD_BYTES = 1 << 20


class IngestSide:
    """Mixed into ``Session``: what it needs of one is declared here."""

    hub: Hub
    name: str
    buffer: BoundedBuffer
    gate: IngestGate
    stats: SessionStats
    recorder: Recorder | None
    first_state: asyncio.Event
    drain_deadline: float | None

    def recording_failed(self, exc: OSError) -> None:
        """Stop recording this node (counted, logged once); watching it goes on."""
        self.stats.recording_failures += 1
        log.error("node %s: recording failed, stopping it: %s", self.name, safe_text(str(exc)))
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            with contextlib.suppress(Exception):
                recorder.close()

    async def _consume(self) -> None:
        """Move buffered messages into the hub one at a time, taking turns with every other session
        (the gate), and ingesting a large one on a worker thread. Messages stay in the buffer until
        their turn, so the shared budget can still shed them."""
        loop = asyncio.get_running_loop()
        while True:
            await self.buffer.ready.wait()
            await self.gate.turn()
            item = self.buffer.pop()
            self.stats.queue_depth = len(self.buffer)
            if item is None:
                continue
            msg, nbytes = item
            if nbytes >= OFFLOAD_BYTES:
                await loop.run_in_executor(None, self._ingest, msg)
            else:
                self._ingest(msg)

    def _drain(self) -> None:
        """Ingest what is still buffered; past ``drain_deadline`` the rest is dropped and counted."""
        deadline = self.drain_deadline
        while (item := self.buffer.pop()) is not None:
            if deadline is not None and time.monotonic() > deadline:
                self.stats.dropped[kind_of(item[0])] += 1
                continue
            self._ingest(item[0])

    def _ingest(self, item: Item) -> None:
        """Parse (a raw segment, now that its turn came) and hand to the hub."""
        if isinstance(item, RawSegment):
            parsed = item.parse()
            if isinstance(parsed, SegmentError):
                self.hub.errors(self.name, [parsed])
                return
            msg = parsed
        else:
            msg = item
        try:
            update = self.hub.ingest(self.name, msg)
        except Exception:  # a pipeline bug must not kill the session
            log.exception("node %s: ingest failed", self.name)
            return
        if self.recorder is not None:
            try:
                self.recorder.write(msg)
            except OSError as exc:
                self.recording_failed(exc)
        if update is not None and not self.first_state.is_set():
            self.first_state.set()
