"""The exporter's own side of each scrape, kept beside the recordings so a backfill has it too.

A recording holds what the nodes sent; what the exporter itself measured while recording (how long
each scrape took, whether it answered in time, the pubsub collector's streams) exists nowhere else.
With ``--record DIR`` live mode appends one JSON line per Prometheus scrape of /metrics to
``DIR/exporter-<UTC time>-<seq>.scrapes.jsonl``::

    {"ts": 1700000000123, "up": 1, "scrape_duration_seconds": 0.0042, "collector": {...}}

- ``ts``: when the request arrived (ms, the exporter's clock), as the scraper stamps its samples.
- ``up``: 1 when the body was ready within the scraper's own timeout
  (``X-Prometheus-Scrape-Timeout-Seconds``), else 0: the exporter's view of the scrape's outcome.
  Requests without that header are not scrapes by a Prometheus and are not journaled.
- ``scrape_duration_seconds``: the value that scrape's ``libp2p_exporter_scrape_duration_seconds``
  carried (absent when building the body failed).
- ``collector``: the pubsub collector's counters at that moment, when one runs.

Lines are written whole and flushed, so a crash tears at most the last one (the reader skips it).
Files rotate by size like the recordings. A journal that cannot be written is logged once and
switched off: the exporter goes on serving.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from exporter.files import open_new
from exporter.settings import Recording

log = logging.getLogger(__name__)

SUFFIX = ".scrapes.jsonl"
MAX_LINE = 64 * 1024  # far above a real line; a longer one is damage, skipped unread


class ScrapeJournal:
    """Appends one line per scrape; thread-safe (scrapes are answered from executor threads)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int = Recording.max_bytes,
        extra: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.extra = extra  # more fields per line (the pubsub collector's counters)
        self._fh: TextIO | None = None
        self._size = 0
        self._seq = 0
        self._lock = threading.Lock()
        self.failed = False
        self.lines = 0

    def scraped(self, started_s: float, timeout: str | None, elapsed_s: float, duration_s: float | None) -> None:
        """One answered (or failed: ``duration_s`` None) /metrics request that arrived at ``started_s``."""
        if timeout is None or self.failed:
            return
        try:
            limit = float(timeout)
        except ValueError:
            return
        entry: dict[str, Any] = {"ts": int(started_s * 1000), "up": int(duration_s is not None and elapsed_s < limit)}
        if duration_s is not None:
            entry["scrape_duration_seconds"] = duration_s
        try:  # the journal must never fail the scrape it describes
            if self.extra is not None:
                entry.update(self.extra())
            line = json.dumps(entry, separators=(",", ":")) + "\n"
        except Exception as exc:
            self.failed = True
            log.error("scrape journal in %s: cannot describe a scrape (%r); journal off", self.dir, exc)
            return
        self._write(line)

    def _write(self, line: str) -> None:
        with self._lock:
            try:
                if self._fh is None or self._size + len(line) > self.max_bytes:
                    self._rotate()
                assert self._fh is not None
                self._fh.write(line)
                self._fh.flush()
                self._size += len(line)
                self.lines += 1
            except OSError as exc:
                self.failed = True
                log.error("scrape journal in %s: cannot write (%s); journal off", self.dir, exc.strerror or exc)

    def _rotate(self) -> None:
        if self._fh is not None:
            self._fh.close()
        opener = lambda p: open(p, "x", encoding="utf-8")  # noqa: E731, SIM115 - kept open, closed in close()
        _, self._fh, self._seq = open_new(self.dir, "exporter", SUFFIX, self._seq, opener)
        self._size = 0

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


@dataclass
class JournalRead:
    entries: list[dict[str, Any]] = field(default_factory=list)
    damaged: int = 0  # lines that were not a journal entry (a torn last line, say)


def read_journal(path: str | os.PathLike[str]) -> JournalRead:
    """The entries of one journal file, in order; what is not an entry is counted, not raised."""
    out = JournalRead()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in _lines(fh):
            try:
                entry = json.loads(line)
            except ValueError:
                out.damaged += 1
                continue
            if not _valid(entry):
                out.damaged += 1
                continue
            out.entries.append(entry)
    return out


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2**53


def _valid(entry: object) -> bool:
    """An entry as ``ScrapeJournal`` writes it: anything else is damage, never a guess."""
    if not isinstance(entry, dict) or not isinstance(entry.get("ts"), int) or not _number(entry["ts"]):
        return False
    if entry.get("up") not in (0, 1) or isinstance(entry.get("up"), bool):
        return False
    if "scrape_duration_seconds" in entry and not _number(entry["scrape_duration_seconds"]):
        return False
    collector = entry.get("collector", {})
    if not isinstance(collector, dict):
        return False
    errors = collector.get("errors", {})
    numbers = [v for k, v in collector.items() if k != "errors"]
    return isinstance(errors, dict) and all(_number(v) for v in [*numbers, *errors.values()])


def _lines(fh: TextIO) -> Iterator[str]:
    while True:
        line = fh.readline(MAX_LINE)
        if not line:
            return
        if len(line) >= MAX_LINE and not line.endswith("\n"):
            while (more := fh.readline(MAX_LINE)) and not more.endswith("\n"):
                pass
            yield ""  # counted as damage
            continue
        if line.strip():
            yield line
