"""The two bounds between a live socket and the hub: reconnect backoff and the bounded message buffer."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque

from exporter.protocol import introspection_pb2 as pb


class Backoff:
    """Exponential backoff with jitter and a cap; ``reset()`` after a healthy session."""

    def __init__(
        self, initial: float, cap: float, factor: float = 2.0, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        spread = base * self.jitter
        return max(0.0, min(self.cap, base + self.rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.attempt = 0


class BoundedBuffer:
    """A FIFO of server messages with a hard size, in messages and in bytes. When full, an event is
    dropped; anything else (a State, a Runtime, a response) pushes out the oldest entries until it
    fits. Every drop is counted by kind. The byte bound matters because one message may be 8 MiB."""

    def __init__(self, size: int, dropped: Counter[str], max_bytes: int = 0) -> None:
        self.size = max(1, size)
        self.max_bytes = max_bytes  # 0: no byte bound
        self.items: deque[tuple[pb.ServerMessage, int]] = deque()
        self.bytes = 0
        self.dropped = dropped
        self.ready = asyncio.Event()

    def _full(self, nbytes: int) -> bool:
        if len(self.items) >= self.size:
            return True
        return bool(self.max_bytes) and bool(self.items) and self.bytes + nbytes > self.max_bytes

    def put(self, msg: pb.ServerMessage, nbytes: int = 0) -> None:
        if self._full(nbytes):
            kind = msg.WhichOneof("payload") or "empty"
            if kind == "event":
                self.dropped[kind] += 1
                return
            while self._full(nbytes):
                old, old_bytes = self.items.popleft()
                self.bytes -= old_bytes
                self.dropped[old.WhichOneof("payload") or "empty"] += 1
        self.items.append((msg, nbytes))
        self.bytes += nbytes
        self.ready.set()

    def take(self) -> list[pb.ServerMessage]:
        out = [msg for msg, _ in self.items]
        self.items.clear()
        self.bytes = 0
        self.ready.clear()
        return out

    def __len__(self) -> int:
        return len(self.items)
