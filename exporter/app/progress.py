"""A progress line for long jobs: a bar on a terminal, a plain line now and then elsewhere (logs, CI)."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """A one-line bar on a terminal; elsewhere a plain line now and then, for hours-long inputs."""

    def __init__(self, total: int, stream: TextIO, *, tty: bool | None = None, period_s: float = 30.0) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.period_s = period_s if not self.tty else 0.2
        self.done = 0
        self.states = 0
        self._last = time.monotonic()
        self._drawn = False

    def advance(self, nbytes: int, states: int) -> None:
        self.done += nbytes
        self.states += states
        now = time.monotonic()
        if now - self._last >= self.period_s:
            self._last = now
            self._show()

    def _show(self) -> None:
        share = min(self.done / self.total, 1.0)
        if self.tty:
            bar = "#" * int(share * 30)
            self.stream.write(f"\rbackfill [{bar:<30}] {share:4.0%}  {self.states} States written ")
            self._drawn = True
        else:
            self.stream.write(f"backfill: {share:.0%} of the input read, {self.states} States written\n")
        self.stream.flush()

    def phase(self, text: str) -> None:
        self.clear()
        if self.tty:
            self.stream.write(f"backfill: {text}\n")
            self.stream.flush()

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
