"""Recording the pubsub trace events the collector receives, beside the introspection recordings.

With ``--record DIR`` and ``--pubsub.listen``, every event a remote tracer sends is also written to
``DIR/pubsub/collector-<UTC time>-<seq>.pubsub.pb.gz``: ``traced``'s own form (a gzip of
varint-delimited TraceEvents), so the files read back with ``--pubsub.file``, in ``backfill`` and in
go-libp2p-pubsub-tracer's tools. Each batch is sync-flushed: a crash tears at most the last batch,
which the reader reports and skips. Files rotate by size or age, as the recordings do; a recorder
that cannot write is logged once and stops, the collector goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from exporter.files import open_new
from exporter.protocol.pubsub_codec import TraceEvent, delimit
from exporter.settings import Recording

log = logging.getLogger(__name__)

SUFFIX = ".pubsub.pb.gz"
SUBDIR = "pubsub"


class TraceRecorder:
    """Appends event batches to rotating traced-gzip files; thread-safe (the collector runs on trio)."""

    def __init__(
        self, directory: str | Path, *, max_bytes: int = Recording.max_bytes, max_age_s: float = Recording.max_age_s
    ) -> None:
        self.dir = Path(directory) / SUBDIR
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._fh: BinaryIO | None = None
        self._gz: zlib._Compress | None = None
        self._opened = 0.0
        self._size = 0
        self._seq = 0
        self._lock = threading.Lock()
        self.failed = False
        self.events = 0

    def write(self, events: Sequence[TraceEvent]) -> None:
        if self.failed or not events:
            return
        with self._lock:
            try:
                now = time.time()
                if self._fh is None or self._size >= self.max_bytes or now - self._opened >= self.max_age_s:
                    self._rotate(now)
                assert self._fh is not None and self._gz is not None
                data = self._gz.compress(b"".join(delimit(e) for e in events)) + self._gz.flush(zlib.Z_SYNC_FLUSH)
                self._fh.write(data)
                self._fh.flush()
                self._size += len(data)
                self.events += len(events)
            except OSError as exc:
                self.failed = True
                log.error("pubsub recording in %s: cannot write (%s); recording off", self.dir, exc.strerror or exc)

    def _finish(self) -> None:
        if self._fh is not None and self._gz is not None:
            self._fh.write(self._gz.flush(zlib.Z_FINISH))
            self._fh.close()
        self._fh, self._gz = None, None

    def _rotate(self, now: float) -> None:
        self._finish()
        opener = lambda p: open(p, "xb")  # noqa: E731, SIM115 - closed in _finish
        _, self._fh, self._seq = open_new(self.dir, "collector", SUFFIX, self._seq, opener)
        self._gz = zlib.compressobj(wbits=31)
        self._opened, self._size = now, 0

    def close(self) -> None:
        with self._lock:
            try:
                self._finish()
            except OSError as exc:
                log.error("pubsub recording in %s: cannot finish (%s)", self.dir, exc.strerror or exc)


def find_recorded(args: Sequence[str]) -> list[Path]:
    """Recorded trace files (``*.pubsub.pb.gz``) under the directories among ``args``."""
    out: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            out += sorted(p for p in path.rglob(f"*{SUFFIX}") if p.is_file())
    return out
