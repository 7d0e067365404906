"""Wiring go-libp2p-pubsub traces into a hub: the pubsub mapper, message spans, trace files, the collector.

``--pubsub.listen /ip4/0.0.0.0/tcp/4001`` runs the remote-tracer collector (a py-libp2p host on its
own trio thread, ``introspector.bridge``) that go-libp2p-pubsub nodes reach with ``NewRemoteTracer``;
``--pubsub.file`` reads JSON, PB or traced gzip files once at start. Both hand their events to
``Hub.ingest_traces``; the hub feeds the pubsub mapper (``mappers/pubsub.py``) and, when tracing is
on, the message-span listener (``sinks/otel/pubsub.py``). Without either flag nothing is added and
the exposition has no pubsub families.
"""

from __future__ import annotations

import argparse
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
from exporter.sinks.otel.config import config_from_args
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

    async def start(self, args: argparse.Namespace) -> None:
        """Read the trace files, then run the collector; a bad flag or address is one line and exit 2."""
        for path in list(getattr(args, "pubsub_files", None) or []):
            await asyncio.get_running_loop().run_in_executor(None, self.read_file, path)
        listen = getattr(args, "pubsub_listen", None)
        if not listen:
            return
        seed_hex = getattr(args, "pubsub_seed", None)
        try:
            seed = bytes.fromhex(seed_hex) if seed_hex else None
            if seed is not None and len(seed) != 32:
                raise ValueError("needs 64 hex digits")
        except ValueError as exc:
            raise SystemExit(f"libp2p-exporter: --pubsub.identity-seed: {exc}") from exc
        try:
            await self.start_collector(listen, seed)
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
    args: argparse.Namespace,
    intake: TraceIntakeStats,
    clock: Callable[[], float] | None = None,
) -> PubsubMetrics:
    """The pubsub mapper as the ``--pubsub.*`` mapper flags set it (live mode and backfill alike)."""
    topics = [t.strip() for t in (getattr(args, "pubsub_topics", "") or "").split(",") if t.strip()]
    return PubsubMetrics(
        cardinality,
        topics=topics,
        topic_cap=max(0, getattr(args, "pubsub_topic_cap", 32)),
        ttl_s=max(0.0, getattr(args, "pubsub_window", 120.0)),
        max_messages=max(1, getattr(args, "pubsub_max_messages", 50_000)),
        intake=intake,
        clock=clock if clock is not None else time.monotonic,
    )


def pubsub_from_args(hub: Hub, args: argparse.Namespace) -> PubsubWiring | None:
    """Add the pubsub mapper (and spans, when tracing is on) to ``hub`` as the flags ask; None when
    neither a listen address nor a file is given. ``start`` reads the files and runs the collector."""
    if not getattr(args, "pubsub_listen", None) and not getattr(args, "pubsub_files", None):
        return None
    intake = TraceIntakeStats()
    metrics = pubsub_metrics(hub.cardinality, args, intake)
    hub.add_trace_mapper(metrics)
    spans = None
    cfg = config_from_args(args)
    if cfg is not None:
        from exporter.sinks.otel.pubsub import PubsubSpans

        ratio = min(1.0, max(0.0, getattr(args, "tracing_sample_pubsub", 1.0)))
        try:
            spans = PubsubSpans(cfg, ratio=ratio)
        except ImportError as exc:  # the optional extra otel is missing: a user's error, one line
            raise SystemExit(
                f"libp2p-exporter: tracing needs the OpenTelemetry packages: pip install 'libp2p-exporter[otel]' ({exc})"
            ) from exc
        hub.add_listener(spans)
    return PubsubWiring(hub, metrics, intake, spans)
