"""The two bounds between a live socket and the hub: reconnect backoff and the bounded message buffer."""

from __future__ import annotations

import asyncio
import heapq
import itertools
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

    The biggest buffer is found through a max-heap, not a scan: at 4,000 nodes the newest State of
    each fills the budget by itself, so every put finds it over and nothing to shed, and a scan of
    every buffer per put took 95 % of the loop (measured with py-spy; the fleet collapsed). Heap
    entries are ``(-bytes, -items, n, buffer)`` as of a put; an entry that no longer matches its
    buffer is stale and is dropped, or pushed again with the buffer's sizes now, when it surfaces.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes  # 0: no shared bound
        self.bytes = 0
        self.buffers: set[BoundedBuffer] = set()
        self._heap: list[tuple[int, int, int, BoundedBuffer]] = []
        self._pushed = itertools.count()
        self.examined = 0  # heap entries looked at by enforce (a test bounds it per put)
        # States that reached any buffer, and States taken from one to be parsed: over a period, their
        # ratio is how far demand is past what the loop parses (the governor sizes its step by it).
        self.states_in = 0
        self.states_taken = 0

    def register(self, buf: BoundedBuffer) -> None:
        self.buffers.add(buf)

    def unregister(self, buf: BoundedBuffer) -> None:
        self.buffers.discard(buf)
        self.bytes -= buf.bytes

    def grew(self, buf: BoundedBuffer) -> None:
        """``buf`` took a message: remember its sizes, and shed if the total is over."""
        if not self.max_bytes:
            return
        if len(buf.items) > 1:
            heapq.heappush(self._heap, (-buf.bytes, -len(buf.items), next(self._pushed), buf))
            if len(self._heap) > 4 * len(self.buffers) + 64:
                self._rebuild()
        self.enforce()

    def _rebuild(self) -> None:
        # Puts under the budget leave stale entries behind; start again from the buffers as they are.
        self._heap = [(-b.bytes, -len(b.items), next(self._pushed), b) for b in self.buffers if len(b.items) > 1]
        heapq.heapify(self._heap)

    def enforce(self) -> None:
        """Shed the biggest buffers' oldest messages until the total fits (the newest message stays)."""
        heap = self._heap
        while self.max_bytes and self.bytes > self.max_bytes and heap:
            self.examined += 1
            neg_bytes, neg_items, _, biggest = heap[0]
            size, count = biggest.bytes, len(biggest.items)
            if biggest not in self.buffers or count <= 1:
                heapq.heappop(heap)  # gone, or down to its newest message: a later put pushes it again
                continue
            if (-neg_bytes, -neg_items) != (size, count):
                heapq.heapreplace(heap, (-size, -count, next(self._pushed), biggest))
                continue
            heapq.heappop(heap)
            while self.bytes > self.max_bytes and len(biggest.items) > 1:
                biggest.shed_oldest()
            if len(biggest.items) > 1:
                heapq.heappush(heap, (-biggest.bytes, -len(biggest.items), next(self._pushed), biggest))


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
            if self.budget is not None:
                self.budget.states_in += 1
        self.items.append((msg, nbytes))
        self.bytes += nbytes
        if self.budget is not None:
            self.budget.bytes += nbytes
            self.budget.grew(self)
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
            if self.budget is not None:
                self.budget.states_taken += 1
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
