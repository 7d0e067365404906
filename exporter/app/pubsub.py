"""Wiring go-libp2p-pubsub traces into a hub: the pubsub mapper, message spans, trace files, the collector.

``--pubsub.listen /ip4/0.0.0.0/tcp/4001`` runs the remote-tracer collector (a py-libp2p host on its
own trio thread, ``introspector.bridge``) that go-libp2p-pubsub nodes reach with ``NewRemoteTracer``;
``--pubsub.file`` reads JSON, PB or traced gzip files once at start. Both hand their events to
``Hub.ingest_traces``; the hub feeds the pubsub mapper (``mappers/pubsub.py``) and, when tracing is
on, the message-span listener (``sinks/otel/pubsub.py``). Without either flag nothing is added and
the exposition has no pubsub families.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from exporter.mappers.pubsub import PubsubMetrics
from exporter.model.labels import Cardinality
from exporter.pipeline.hub import Hub
from exporter.pipeline.traces import TraceIntakeStats
from exporter.protocol.pubsub_codec import TraceEvent
from exporter.settings import Pubsub, Tracing
from exporter.sinks.otel.config import resolve
from exporter.sources.pubsub_collector import TraceCollector, run_collector_host
from exporter.sources.pubsub_recording import TraceRecorder
from exporter.sources.pubsub_trace import feed_trace_file

log = logging.getLogger(__name__)


class PubsubWiring:
    """The pubsub mapper and spans on one hub, the files to read and the collector to run."""

    def __init__(self, hub: Hub, metrics: PubsubMetrics, intake: TraceIntakeStats, spans: Any = None) -> None:
        self.hub = hub
        self.metrics = metrics
        self.intake = intake
        self.spans = spans  # sinks.otel.pubsub.PubsubSpans when tracing is on
        self.collector = TraceCollector(self._on_events, stats=intake.collector)
        self.collector_id = ""
        self.collector_addrs: list[str] = []
        self._thread: Any = None
        self.recorder: TraceRecorder | None = None  # --record: what the collector receives, kept

    def _on_events(self, peer: str, events: list[TraceEvent]) -> None:
        if self.recorder is not None:
            self.recorder.write(events)
        self.hub.ingest_traces(peer, events)

    def name_node(self, peer_b58: str, name: str) -> None:
        """Label a traced node by name (before its first event) instead of by peer id."""
        self.metrics.set_name(peer_b58, name)
        if self.spans is not None:
            self.spans.names[peer_b58] = name

    @property
    def collector_peer_info(self) -> Any:
        """The collector as a py-libp2p PeerInfo (for py-libp2p nodes' RemoteTracer)."""
        import multiaddr
        from libp2p.peer.id import ID
        from libp2p.peer.peerinfo import PeerInfo

        return PeerInfo(ID.from_base58(self.collector_id), [multiaddr.Multiaddr(a) for a in self.collector_addrs])

    def journal_fields(self) -> dict[str, Any]:
        """The collector's counters for the scrape journal (sinks/scrape_journal.py), while one runs."""
        if not self.intake.collecting:
            return {}
        c = self.intake.collector
        return {
            "collector": {
                "streams": c.streams_active,
                "accepted": c.streams_accepted,
                "refused": c.streams_refused,
                "batches": c.batches,
                "errors": dict(c.errors),
            }
        }

    def read_file(self, path: str) -> None:
        feed_trace_file(self.hub, path, self.intake)

    async def start_collector(self, listen: str, seed: bytes | None = None) -> None:
        from exporter.introspector.bridge import TrioThread  # needs trio: the optional extra libp2p

        async def main(task_status: Any) -> None:
            await run_collector_host(self.collector, listen=listen, key_seed=seed, task_status=task_status)

        self._thread = TrioThread(main, name="pubsub-collector")
        self.collector_id, self.collector_addrs = await self._thread.start(timeout=30)
        self.intake.collecting = True
        for addr in self.collector_addrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{self.collector_id}"
            print(f"pubsub trace collector: {full}", flush=True)

    async def start(self, settings: Pubsub) -> None:
        """Read the trace files, then run the collector; an address it cannot listen on is one line."""
        for path in settings.files:
            await asyncio.get_running_loop().run_in_executor(None, self.read_file, path)
        listen = settings.listen
        if not listen:
            return
        try:
            await self.start_collector(listen, settings.identity_seed)
        except Exception as exc:
            raise SystemExit(f"libp2p-exporter: cannot run the pubsub collector on {listen}: {exc}") from exc

    async def stop(self) -> None:
        if self._thread is not None:
            err = await self._thread.stop(timeout=4.0)
            if err is not None:
                log.debug("pubsub collector shutdown: %r", err)
        if self.recorder is not None:
            self.recorder.close()
        if self.spans is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.spans.shutdown)


def pubsub_metrics(
    cardinality: Cardinality,
    settings: Pubsub,
    intake: TraceIntakeStats,
    clock: Callable[[], float] | None = None,
) -> PubsubMetrics:
    """The pubsub mapper as the ``--pubsub.*`` mapper settings ask (live mode and backfill alike)."""
    return PubsubMetrics(
        cardinality,
        topics=settings.topics,
        topic_cap=settings.topic_cap,
        ttl_s=settings.window_s,
        max_messages=settings.max_messages,
        intake=intake,
        clock=clock if clock is not None else time.monotonic,
    )


def wire_pubsub(hub: Hub, settings: Pubsub, tracing: Tracing) -> PubsubWiring | None:
    """Add the pubsub mapper (and spans, when tracing is on) to ``hub`` as the settings ask; None when
    neither a listen address nor a file is given. ``start`` reads the files and runs the collector."""
    if not settings.wanted:
        return None
    intake = TraceIntakeStats()
    metrics = pubsub_metrics(hub.cardinality, settings, intake)
    hub.add_trace_mapper(metrics)
    spans = None
    cfg = resolve(tracing)
    if cfg is not None:
        from exporter.sinks.otel.pubsub import PubsubSpans

        try:
            spans = PubsubSpans(cfg, ratio=tracing.sample_pubsub)
        except ImportError as exc:  # the optional extra otel is missing: a user's error, one line
            raise SystemExit(
                f"libp2p-exporter: tracing needs the OpenTelemetry packages: pip install 'libp2p-exporter[otel]' ({exc})"
            ) from exc
        hub.add_listener(spans)
    return PubsubWiring(hub, metrics, intake, spans)
