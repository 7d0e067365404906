"""Independent computations over decoded States, written straight from docs/protocol.md.

They deliberately do not use exporter.model or exporter.diff, so tests compare two derivations.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from exporter.protocol import pb
from exporter.protocol.framing import SegmentError
from exporter.sources.capture import iter_capture

CLOSED, ERROR = 1, 4


def decoded(path: Path) -> list[pb.ServerMessage]:
    return [m for m in iter_capture(path) if not isinstance(m, SegmentError)]


def states(msgs: list[pb.ServerMessage]) -> list[pb.State]:
    return [m.state for m in msgs if m.WhichOneof("payload") == "state"]


def is_closed(c: pb.Connection) -> bool:
    return c.status in (CLOSED, ERROR) or c.timeline.close_ts > 0


def active_connections(state: pb.State) -> int:
    return sum(1 for c in state.subsystems.connections if c.status == pb.ACTIVE)


# Status names as docs/protocol.md spells the enum (ACTIVE=0 ... ERROR=4), lower case.
STATUS = {0: "active", 1: "closed", 2: "opening", 3: "closing", 4: "error"}


def connections_per_status(state: pb.State) -> Counter[str]:
    return Counter(STATUS.get(c.status, "unknown") for c in state.subsystems.connections)


def peers(state: pb.State) -> int:
    """Distinct peers with at least one connection that is not closed (an empty peer_id is no peer)."""
    return len({c.peer_id for c in state.subsystems.connections if c.peer_id and not is_closed(c)})


def streams_per_protocol(state: pb.State) -> Counter[str]:
    return Counter(s.protocol for c in state.subsystems.connections for s in c.streams.streams)


def dht_peers_per_status(state: pb.State) -> Counter[str]:
    names = {0: "active", 1: "missing", 2: "rejected", 3: "candidate"}
    return Counter(names[p.status] for b in state.subsystems.dht.buckets for p in b.peers)


def closed_connections(seq: list[pb.State]) -> int:
    """Closes seen while watching: each connection once, by status, close_ts or vanishing."""
    open_ids: set[bytes] = set()
    counted: set[bytes] = set()
    closes = 0
    for i, st in enumerate(seq):
        present = {c.id for c in st.subsystems.connections}
        for c in st.subsystems.connections:
            if c.id in counted:
                continue
            if is_closed(c):
                if c.id in open_ids or i > 0:
                    closes += 1
                counted.add(c.id)
                open_ids.discard(c.id)
            else:
                open_ids.add(c.id)
        vanished = open_ids - present
        closes += len(vanished)
        open_ids -= vanished
        counted &= present
    return closes


def opened_connections(seq: list[pb.State]) -> int:
    seen: set[bytes] = set()
    opened = 0
    for i, st in enumerate(seq):
        for c in st.subsystems.connections:
            if c.id not in seen:
                seen.add(c.id)
                if not (i == 0 and is_closed(c)):
                    opened += 1
        seen &= {c.id for c in st.subsystems.connections}
    return opened
