"""go-libp2p-pubsub-tracer's ``tracestat`` definitions, restated over raw TraceEvents for tests.

Written from tracestat's description, not from exporter code: per peer, count PUBLISH, DELIVER,
DUPLICATE and REJECT events; per message, collect the PUBLISH and DELIVER timestamps, sort them, and
take each later one minus the earliest as a propagation delay (nanoseconds).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from exporter.protocol.pubsub_codec import TraceEvent

T = TraceEvent.Type


@dataclass
class TraceStat:
    per_peer: dict[bytes, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    totals: Counter[str] = field(default_factory=Counter)
    stamps: dict[bytes, list[tuple[int, bytes, str]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, e: TraceEvent) -> None:
        name = {
            T.PUBLISH_MESSAGE: "publish",
            T.DELIVER_MESSAGE: "deliver",
            T.DUPLICATE_MESSAGE: "duplicate",
            T.REJECT_MESSAGE: "reject",
            T.SEND_RPC: "sendRPC",
            T.DROP_RPC: "dropRPC",
        }.get(e.type)
        if name is None:
            return
        self.per_peer[e.peerID][name] += 1
        self.totals[name] += 1
        if e.type == T.PUBLISH_MESSAGE:
            self.stamps[e.publishMessage.messageID].append((e.timestamp, e.peerID, "publish"))
        elif e.type == T.DELIVER_MESSAGE:
            self.stamps[e.deliverMessage.messageID].append((e.timestamp, e.peerID, "deliver"))

    def delays(self) -> dict[bytes, list[tuple[int, bytes, str]]]:
        """tracestat's per-message delays: (t - t0, peer, kind) for every stamp after the earliest."""
        out = {}
        for mid, stamps in self.stamps.items():
            ordered = sorted(stamps)
            t0 = ordered[0][0]
            out[mid] = [(t - t0, peer, kind) for t, peer, kind in ordered[1:]]
        return out

    def cdf_ms(self) -> list[tuple[int, int]]:
        """The propagation delay CDF tracestat prints: (ms rounded up from 0.5, cumulative count)."""
        samples = Counter((dt + 499_999) // 1_000_000 for ds in self.delays().values() for dt, _, _ in ds)
        running, out = 0, []
        for ms in sorted(samples):
            running += samples[ms]
            out.append((ms, running))
        return out
