"""The two bounds between a live socket and the hub: reconnect backoff and the bounded message buffer."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque

from exporter.sources.segments import Item, RawSegment, kind_of


class Backoff:
    """Exponential backoff with jitter and a cap; ``reset()`` after a healthy session."""

    def __init__(
        self, initial: float, cap: float, factor: float = 2.0, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        """The next delay. The power is bounded: ``2.0 ** 1024`` overflows a float, and a target
        down for hours must still be retried at the cap, never given up."""
        try:
            base = min(self.cap, self.initial * self.factor**self.attempt)
        except OverflowError:
            base = self.cap
        if base < self.cap:
            self.attempt += 1
        spread = base * self.jitter
        return max(0.0, min(self.cap, base + self.rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.attempt = 0


class SharedBudget:
    """One byte budget for the buffers of every target together.

    Why: a per-target bound alone lets a thousand targets queue a thousand times as much. When the
    sum goes over, the buffer holding the most bytes sheds its oldest messages first (counted in
    that target's drops), so one node that piles up States is cut back before any other node waits.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes  # 0: no shared bound
        self.bytes = 0
        self.buffers: set[BoundedBuffer] = set()

    def register(self, buf: BoundedBuffer) -> None:
        self.buffers.add(buf)

    def unregister(self, buf: BoundedBuffer) -> None:
        self.buffers.discard(buf)
        self.bytes -= buf.bytes

    def enforce(self) -> None:
        """Shed the biggest buffers' oldest messages until the total fits (the newest message stays).

        The biggest buffer is looked up once per shedding round, not once per message dropped."""
        while self.max_bytes and self.bytes > self.max_bytes:
            biggest = max(self.buffers, key=lambda b: (b.bytes, len(b.items)), default=None)
            if biggest is None or len(biggest.items) <= 1:
                return  # every buffer is down to its newest message: nothing more to shed
            while self.bytes > self.max_bytes and len(biggest.items) > 1:
                biggest.shed_oldest()


class BoundedBuffer:
    """A FIFO of server messages with a hard size, in messages and in bytes. When full, an event is
    dropped; anything else (a State, a Runtime, a response) pushes out the oldest entries until it
    fits. Every drop is counted by kind in ``dropped``; a drop of a message never parsed (a
    ``RawSegment``) is counted in ``shed`` too. The byte bound matters because one message may be
    8 MiB. With a ``SharedBudget`` the bytes of all buffers together are bounded too."""

    def __init__(
        self,
        size: int,
        dropped: Counter[str],
        max_bytes: int = 0,
        budget: SharedBudget | None = None,
        max_states: int = 0,
        shed: Counter[str] | None = None,
    ) -> None:
        self.size = max(1, size)
        self.max_bytes = max_bytes  # 0: no byte bound
        # At most this many States queued (0: no bound): past it a new State replaces the oldest
        # queued one, so a node that falls behind is served from its newest data, not minutes-old one.
        # Events queued around it stay, in order: the States that follow them still come after them.
        self.max_states = max_states
        self.states = 0
        self.items: deque[tuple[Item, int]] = deque()
        self.bytes = 0
        self.dropped = dropped
        self.shed = shed if shed is not None else Counter()
        self.ready = asyncio.Event()
        self.budget = budget
        if budget is not None:
            budget.register(self)

    def _count(self, item: Item, kind: str) -> None:
        self.dropped[kind] += 1
        if isinstance(item, RawSegment):
            self.shed[kind] += 1

    def shed_oldest(self) -> None:
        """Drop the oldest message (counted by kind)."""
        old, old_bytes = self.items.popleft()
        self._sub(old_bytes)
        kind = kind_of(old)
        if kind == "state":
            self.states -= 1
        self._count(old, kind)

    def _shed_oldest_state(self) -> None:
        for i, (old, old_bytes) in enumerate(self.items):
            if kind_of(old) == "state":
                del self.items[i]
                self._sub(old_bytes)
                self.states -= 1
                self._count(old, "state")
                return

    def _sub(self, nbytes: int) -> None:
        self.bytes -= nbytes
        if self.budget is not None:
            self.budget.bytes -= nbytes

    def close(self) -> None:
        """Leave the shared budget (the session is gone); what is still queued is given up uncounted."""
        if self.budget is not None:
            self.budget.unregister(self)
            self.budget = None

    def _full(self, nbytes: int) -> bool:
        if len(self.items) >= self.size:
            return True
        return bool(self.max_bytes) and bool(self.items) and self.bytes + nbytes > self.max_bytes

    def put(self, msg: Item, nbytes: int = 0) -> None:
        kind = kind_of(msg)
        if self._full(nbytes):
            if kind == "event":
                self._count(msg, kind)
                return
            while self._full(nbytes):
                self.shed_oldest()
        if kind == "state":
            if self.max_states and self.states >= self.max_states:
                self._shed_oldest_state()
            self.states += 1
        self.items.append((msg, nbytes))
        self.bytes += nbytes
        if self.budget is not None:
            self.budget.bytes += nbytes
            self.budget.enforce()
        self.ready.set()

    def pop(self) -> tuple[Item, int] | None:
        """The oldest message and its size, or None when empty."""
        if not self.items:
            self.ready.clear()
            return None
        msg, nbytes = self.items.popleft()
        self._sub(nbytes)
        if kind_of(msg) == "state":
            self.states -= 1
        if not self.items:
            self.ready.clear()
        return msg, nbytes

    def oldest_state_arrival(self) -> float | None:
        """When (monotonic) the oldest queued unparsed State arrived; None when none waits."""
        for item, _ in self.items:
            if isinstance(item, RawSegment) and item.kind == "state":
                return item.arrived
        return None

    def take(self) -> list[Item]:
        out = [msg for msg, _ in self.items]
        self._sub(self.bytes)
        self.items.clear()
        self.states = 0
        self.ready.clear()
        return out

    def __len__(self) -> int:
        return len(self.items)
