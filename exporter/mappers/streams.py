"""Streams: by protocol, direction and status, with open/close counters and durations."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.model.catalogue import Family, Writer
from exporter.model.histogram import Histogram
from exporter.model.histogram_profiles import STREAM_DURATION
from exporter.model.labels import Cardinality
from exporter.pipeline.exemplars import Recent, attach
from exporter.pipeline.lean import StateStep
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

STREAMS = Family(
    "libp2p_streams",
    "gauge",
    "Streams in the latest snapshot by protocol (allow-listed, else other), direction and status.",
    ("protocol", "dir", "status"),
)
REFERENCED = Family(
    "libp2p_streams_referenced",
    "gauge",
    "Streams the node listed by id only (not inlined), which carry no protocol or status.",
)
OPENED = Family(
    "libp2p_streams_opened",
    "counter",
    "Streams opened (or open when first seen), since the exporter started watching.",
    ("protocol", "dir"),
)
CLOSED = Family(
    "libp2p_streams_closed",
    "counter",
    "Streams closed, by status, close_ts, their connection closing, or vanishing; once each, since the exporter "
    "started watching.",
    ("protocol", "dir"),
)
DURATION = Family(STREAM_DURATION, "histogram", "Lifetime of streams that closed, by protocol.", ("protocol",))


@dataclass
class StreamsAcc:
    opened: Counter[tuple[str, str]] = field(default_factory=Counter)
    closed: Counter[tuple[str, str]] = field(default_factory=Counter)
    duration: dict[tuple[str, ...], Histogram] = field(default_factory=dict)  # by (protocol,) or ()
    duration_recent: dict[tuple[str, ...], Recent] = field(default_factory=dict)  # for exemplars


class Streams(Mapper):
    name = "streams"

    def __init__(self, cardinality: Cardinality) -> None:
        super().__init__(cardinality)
        self.duration = cardinality.histograms.layout(STREAM_DURATION)

    def new_accumulator(self) -> StreamsAcc:
        return StreamsAcc()

    def on_state(self, acc: StreamsAcc, step: StateStep) -> None:
        for key in step.s_opened:
            acc.opened[key] += 1
        ts = step.instant_ts / 1000.0
        for (protocol, direction, lifetime_s), stream_key in zip(step.s_closed, step.s_closed_ids):
            acc.closed[(protocol, direction)] += 1
            if lifetime_s is not None:
                hkey = self.duration.key((protocol,))
                hist = acc.duration.get(hkey) or acc.duration.setdefault(hkey, self.duration.new())
                hist.observe(lifetime_s)
                if step.exemplars:
                    recent = acc.duration_recent.get(hkey) or acc.duration_recent.setdefault(hkey, Recent())
                    recent.add(lifetime_s, "stream", stream_key, ts)

    def collect(self, acc: StreamsAcc, node: NodeState, out: Writer) -> None:
        snap = node.last_step
        if snap is None:
            return
        for (protocol, direction, status), n in sorted(snap.stream_status.items()):
            out.gauge(STREAMS, n, {"protocol": protocol, "dir": direction, "status": status})
        if snap.referenced_streams:
            out.gauge(REFERENCED, snap.referenced_streams)
        for family, counter in ((OPENED, acc.opened), (CLOSED, acc.closed)):
            for (protocol, direction), n in sorted(counter.items()):
                out.counter(family, n, {"protocol": protocol, "dir": direction})
        if node.spans is not None:
            attach(acc.duration, acc.duration_recent, node.spans)
        for key, hist in sorted(acc.duration.items()):
            out.histogram(DURATION, hist, self.duration.label_dict(key))
