"""Diffing consecutive snapshots of one node into opens, closes, joins and leaves.

A connection (or stream) closes when its status becomes CLOSED or ERROR, when ``close_ts``
appears, or when it vanishes from the snapshot; whichever is seen first counts, exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from exporter.model.snapshot import IN_ROUTING_TABLE, ConnView, Snapshot, StreamView

V = TypeVar("V", ConnView, StreamView)


@dataclass(slots=True)
class Ended(Generic[V]):
    view: V  # the last view seen
    end_ms: int  # close_ts, or the last instant it was seen when it vanished
    inferred: bool  # True when no close_ts told us the end


@dataclass
class Diff:
    first: bool = False
    restart: bool = False
    opened_conns: list[ConnView] = field(default_factory=list)
    closed_conns: list[Ended[ConnView]] = field(default_factory=list)
    opened_streams: list[StreamView] = field(default_factory=list)
    closed_streams: list[Ended[StreamView]] = field(default_factory=list)
    stream_conn: dict[bytes, ConnView] = field(default_factory=dict)  # stream key -> its connection
    peers_joined: set[str] = field(default_factory=set)
    peers_left: set[str] = field(default_factory=set)
    dht_added: list[str] = field(default_factory=list)
    dht_removed: list[str] = field(default_factory=list)
    dht_status_changed: list[tuple[str, int, int]] = field(default_factory=list)


class _Lifecycle(Generic[V]):
    """Tracks which items are open and which were already counted closed."""

    def __init__(self) -> None:
        self.live: dict[bytes, V] = {}
        self.done: set[bytes] = set()

    def end_all(self, last_seen_ms: int) -> list[Ended[V]]:
        ended = [Ended(v, last_seen_ms, True) for v in self.live.values()]
        self.live.clear()
        self.done.clear()
        return ended

    def step(
        self, items: dict[bytes, tuple[V, bool]], now_ms: int, last_seen_ms: int, first: bool
    ) -> tuple[list[V], list[Ended[V]]]:
        opened: list[V] = []
        ended: list[Ended[V]] = []
        live, done = self.live, self.done
        for key, (view, closed) in items.items():
            if key in done:
                continue
            known = key in live
            if not known:
                if first and closed:  # closed before we ever watched it
                    done.add(key)
                    continue
                opened.append(view)
            if closed:
                close_ts = getattr(view, "close_ts", 0)
                ended.append(Ended(view, close_ts or now_ms, close_ts == 0))
                done.add(key)
                live.pop(key, None)
            else:
                live[key] = view
        for key in [k for k in live if k not in items]:
            ended.append(Ended(live.pop(key), last_seen_ms, True))
        if done:
            self.done = {k for k in done if k in items}
        return opened, ended


class Tracker:
    """Per-node diff state. Feed it snapshots in order; it returns one Diff each."""

    def __init__(self) -> None:
        self.conns: _Lifecycle[ConnView] = _Lifecycle()
        self.streams: _Lifecycle[StreamView] = _Lifecycle()
        self.prev: Snapshot | None = None

    def step(self, cur: Snapshot, restart: bool = False) -> Diff:
        prev = self.prev
        first = prev is None
        diff = Diff(first=first, restart=restart and not first)
        last_seen = prev.instant_ts if prev else cur.instant_ts
        if diff.restart:
            diff.closed_conns.extend(self.conns.end_all(last_seen))
            diff.closed_streams.extend(self.streams.end_all(last_seen))
            prev_peers: frozenset[str] = frozenset()
            diff.peers_left = set(prev.peers) if prev else set()
        else:
            prev_peers = prev.peers if prev else frozenset()

        conn_items = {k: (c, c.closed) for k, c in cur.conns.items()}
        stream_items: dict[bytes, tuple[StreamView, bool]] = {}
        for c in cur.conns.values():
            for sk, s in c.streams.items():
                stream_items[sk] = (s, s.closed or c.closed)
                diff.stream_conn[sk] = c
        opened, ended = self.conns.step(conn_items, cur.instant_ts, last_seen, first)
        diff.opened_conns.extend(opened)
        diff.closed_conns.extend(ended)
        s_opened, s_ended = self.streams.step(stream_items, cur.instant_ts, last_seen, first)
        diff.opened_streams.extend(s_opened)
        diff.closed_streams.extend(s_ended)

        diff.peers_joined |= set(cur.peers - prev_peers)
        diff.peers_left |= set(prev_peers - cur.peers)
        self._dht(prev, cur, diff)
        self.prev = cur
        return diff

    @staticmethod
    def _dht(prev: Snapshot | None, cur: Snapshot, diff: Diff) -> None:
        old = prev.dht.peers if prev and prev.dht else {}
        new = cur.dht.peers if cur.dht else {}
        old_in = {p for p, v in old.items() if v.status in IN_ROUTING_TABLE}
        new_in = {p for p, v in new.items() if v.status in IN_ROUTING_TABLE}
        if diff.restart:  # a restarted node starts an empty routing table
            diff.dht_added, diff.dht_removed = sorted(new_in), sorted(old_in)
            return
        diff.dht_added = sorted(new_in - old_in)
        diff.dht_removed = sorted(old_in - new_in)
        diff.dht_status_changed = [
            (p, old[p].status, v.status) for p, v in new.items() if p in old and old[p].status != v.status
        ]
