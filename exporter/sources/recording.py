"""Recording live sessions to capture files (observer-toolkit format, docs/protocol.md section 4).

Each target writes ``<DIR>/<name>/<name>-<UTC time>.libp2p.trace``; a file is rotated when it
passes a size or an age. Every file stands alone: it starts with the node's Runtime and its config
response, as the observer UI's exports do, so any one of them loads in the UI or in
``libp2p-exporter replay``. Segments are written whole and flushed one by one, so a crash tears at
most the last one, which the reader skips.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from exporter.files import open_new
from exporter.protocol import introspection_pb2 as pb
from exporter.settings import Recording
from exporter.sources.capture import CaptureWriter

log = logging.getLogger(__name__)

SUFFIX = ".libp2p.trace"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A node name as a file name: anything outside ``[A-Za-z0-9._-]`` becomes ``_``."""
    return _UNSAFE.sub("_", name).strip("._") or "node"


def record_dir_problem(directory: str | Path) -> str | None:
    """Why ``directory`` cannot hold recordings (created if missing), or None. Checked at start: a
    recorder that cannot write must refuse to start, not leave an exporter that watches nothing."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        return f"--record {directory}: not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"--record {directory}: cannot write there: {exc.strerror or exc}"
    return None


class RotatingRecorder:
    """Writes one target's ingested messages, rotating by size (bytes) or age (seconds)."""

    # Messages held back until the Runtime arrives, so that every file starts with it; past either
    # bound (a server that never sends one) they are written to a file without it instead.
    MAX_HELD = 10_000
    MAX_HELD_BYTES = 16 << 20

    def __init__(
        self,
        directory: str | Path,
        name: str,
        *,
        max_bytes: int = Recording.max_bytes,
        max_age_s: float = Recording.max_age_s,
    ) -> None:
        self.dir = Path(directory) / safe_name(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = safe_name(name)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.runtime: pb.ServerMessage | None = None
        self.config: pb.ServerMessage | None = None
        self.held: list[pb.ServerMessage] = []
        self.held_bytes = 0
        self.writer: CaptureWriter | None = None
        self.opened_at = 0.0
        self.files: list[Path] = []
        self._seq = 0

    def _open(self) -> CaptureWriter:
        path, writer, self._seq = open_new(
            self.dir, self.name, SUFFIX, self._seq, lambda p: CaptureWriter(p, exclusive=True)
        )
        self.files.append(path)
        self.opened_at = time.monotonic()
        for head in (self.runtime, self.config):
            if head is not None:
                writer.write(head)
        log.info("recording %s to %s", self.name, path)
        return writer

    def _due(self, writer: CaptureWriter) -> bool:
        return writer.bytes_written >= self.max_bytes or (
            self.max_age_s > 0 and time.monotonic() - self.opened_at >= self.max_age_s
        )

    def write(self, msg: pb.ServerMessage) -> None:
        kind = msg.WhichOneof("payload")
        if kind == "response" and msg.response.HasField("effective_config"):
            self.config = msg
        if kind == "runtime":
            first = self.runtime is None
            self.runtime = msg
            if first:
                if self.writer is not None:  # a file begun without a Runtime: the next one has it
                    self.writer.close()
                self.writer = self._open()  # writes the Runtime and the config response
                self._flush_held()
                return
        if self.writer is None:
            self.held.append(msg)
            self.held_bytes += msg.ByteSize()
            if len(self.held) >= self.MAX_HELD or self.held_bytes >= self.MAX_HELD_BYTES:
                log.warning("recording %s: no Runtime yet; writing without it", self.name)
                self.writer = self._open()
                self._flush_held()
            return
        if self._due(self.writer):
            self.writer.close()
            self.writer = self._open()
            if kind == "runtime" or msg is self.config:
                return  # already at the head of the new file
        self.writer.write(msg)

    def _flush_held(self) -> None:
        assert self.writer is not None
        for held in self.held:
            if held is not self.config:
                self.writer.write(held)
        self.held.clear()
        self.held_bytes = 0

    def close(self) -> None:
        if self.writer is None and self.held:
            self.writer = self._open()  # never got a Runtime: keep what came anyway
            self._flush_held()
        if self.writer is not None:
            self.writer.close()
