"""Trace events from outside the introspection protocol: go-libp2p-pubsub's event tracer.

Such events are not about one introspected node: a collector or a trace file carries events from
many traced nodes at once. They enter the pipeline through ``Hub.ingest_traces`` (and
``Hub.traces_ended`` when a finite source such as a file is done), reach every ``TraceMapper`` the
hub was given and every listener's ``on_traces``, and each trace mapper writes its families once
per scrape, after the per-node ones. A hub with no trace mappers exports nothing for them.

``TraceIntakeStats`` is what the trace sources report about themselves (collector streams, damaged
file stretches); it sits here so the source writing it and the mapper exporting it share one
definition without importing each other.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from exporter.model.catalogue import Writer
from exporter.protocol.pubsub_codec import TraceEvent


class TraceMapper:
    """Base class for metrics fed by trace events from many nodes, written once per scrape."""

    name: ClassVar[str] = ""

    def on_traces(self, origin: str, events: Sequence[TraceEvent]) -> None:
        """Events of one batch; ``origin`` is where they came from (a collector peer, a file path)."""

    def on_traces_ended(self, origin: str) -> None:
        """A finite source (a trace file) was read to its end: nothing more will come from it."""

    def collect(self, out: Writer) -> None:
        """Write this mapper's samples for one scrape (its own labels, no node's)."""


@dataclass
class CollectorStats:
    """The remote-tracer collector's bookkeeping: streams, batches, and why streams were cut off."""

    streams_accepted: int = 0
    streams_refused: int = 0
    streams_active: int = 0
    batches: int = 0
    events: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    per_peer_streams: Counter[str] = field(default_factory=Counter)
    ended: dict[str, float] = field(default_factory=dict)  # peer -> when its last stream ended (monotonic)

    def gone(self, grace_s: float, now: float | None = None) -> list[str]:
        """Peers whose last stream ended over ``grace_s`` ago with none since (each reported once)."""
        now = time.monotonic() if now is None else now
        out = [p for p, t in self.ended.items() if now - t > grace_s and p not in self.per_peer_streams]
        for p in out:
            del self.ended[p]
        return out


COLLECTOR_ERRORS = ("gzip", "oversized", "protobuf", "varint", "stream", "idle", "evicted", "handshake_evicted")


@dataclass
class TraceIntakeStats:
    """What the trace sources report: the collector's stats (while one runs) and trace files' damage."""

    collector: CollectorStats = field(default_factory=CollectorStats)
    collecting: bool = False  # a collector was started
    files: int = 0  # trace files read
    file_errors: Counter[str] = field(default_factory=Counter)  # damaged stretches skipped, by reason
    # go's RemoteTracer retries a lost collector after a minute: a node without a stream for longer is gone
    gone_after_s: float = 150.0
