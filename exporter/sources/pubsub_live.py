"""Pubsub traces as an exporter source: the remote-tracer collector and trace files, into the hub's /metrics.

``--pubsub.listen /ip4/0.0.0.0/tcp/4001`` runs the collector (a py-libp2p host on its own trio
thread, see bridge.py) that go-libp2p-pubsub nodes reach with ``NewRemoteTracer``; ``--pubsub.file``
reads JSON, PB or traced gzip files once at start. Either feeds one PubsubMetrics, written into the
hub's scrape through ``hub.extra_collectors``, and message spans when tracing is on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from typing import Any

from exporter.families import Families
from exporter.protocol.framing import SegmentError
from exporter.protocol.pubsub_codec import TraceEvent
from exporter.pubsub_metrics import PubsubMetrics
from exporter.sources.pubsub_collector import TraceCollector, run_collector_host
from exporter.sources.pubsub_trace import ReadStats, TraceFileError, describe, iter_trace_file

log = logging.getLogger(__name__)


def add_pubsub_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pubsub traces (go-libp2p-pubsub event tracer; off unless a listen address or file)")
    g.add_argument(
        "--pubsub.listen",
        dest="pubsub_listen",
        metavar="MULTIADDR",
        default=None,
        help="run a remote-tracer collector (/libp2p/pubsub/tracer/1.0.0) on this libp2p address, "
        "e.g. /ip4/0.0.0.0/tcp/4001; its /p2p/ address is printed for the nodes' tracer configuration",
    )
    g.add_argument(
        "--pubsub.identity-seed",
        dest="pubsub_seed",
        metavar="HEX",
        default=None,
        help="64 hex digits: keeps the collector's peer id across restarts (default: a new id each start)",
    )
    g.add_argument(
        "--pubsub.file",
        dest="pubsub_files",
        metavar="PATH",
        action="append",
        default=[],
        help="read a trace file (JSON tracer, PB tracer or traced gzip) at start; repeatable",
    )
    g.add_argument(
        "--pubsub.topics",
        dest="pubsub_topics",
        metavar="LIST",
        default="",
        help="comma-separated topics always kept as label values",
    )
    g.add_argument(
        "--pubsub.topic-cap",
        dest="pubsub_topic_cap",
        metavar="N",
        type=int,
        default=32,
        help="further topics that may become label values (first come); beyond them: other (default 32)",
    )
    g.add_argument(
        "--pubsub.window",
        dest="pubsub_window",
        metavar="SECONDS",
        type=float,
        default=120.0,
        help="how long a message is followed for propagation; its reach is observed when it leaves (default 120)",
    )
    g.add_argument(
        "--pubsub.max-messages",
        dest="pubsub_max_messages",
        metavar="N",
        type=int,
        default=50_000,
        help="messages followed at once; past it the oldest leave early and are counted (default 50000)",
    )
    g.add_argument(
        "--tracing.sample.pubsub",
        dest="tracing_sample_pubsub",
        metavar="RATIO",
        type=float,
        default=1.0,
        help="share of pubsub messages traced as spans, by message id, 0..1 (default 1)",
    )


class PubsubSource:
    """Owns the metrics, the optional spans and the collector thread."""

    def __init__(self, hub: Any, metrics: PubsubMetrics, spans: Any = None) -> None:
        self.hub = hub
        self.metrics = metrics
        self.spans = spans
        self.collector = TraceCollector(self.on_events)
        self.collector_id = ""
        self.collector_addrs: list[str] = []
        self.file_stats: dict[str, ReadStats] = {}
        # go's RemoteTracer retries a lost collector after a minute: a node without a stream for longer is gone
        self.gone_after_s = 150.0
        self._thread: Any = None
        extra: list[Callable[[Families], None]] = getattr(hub, "extra_collectors", None) or []
        extra.append(self.collect_into)
        hub.extra_collectors = extra
        hub.pubsub = self

    def on_events(self, _peer: str, events: list[TraceEvent]) -> None:
        self.metrics.ingest_all(events)
        if self.spans is not None:
            self.spans.on_events(events)

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

    async def start_collector(self, listen: str, seed: bytes | None = None) -> None:
        from exporter.introspector.bridge import TrioThread

        async def main(task_status: Any) -> None:
            await run_collector_host(self.collector, listen=listen, key_seed=seed, task_status=task_status)

        self._thread = TrioThread(main, name="pubsub-collector")
        self.collector_id, self.collector_addrs = await self._thread.start(timeout=30)
        for addr in self.collector_addrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{self.collector_id}"
            print(f"pubsub trace collector: {full}", flush=True)

    def read_file(self, path: str) -> ReadStats:
        """Read one trace file into the metrics (and spans); one log line for it, however damaged."""
        stats = ReadStats()
        batch: list[TraceEvent] = []
        try:
            for item in iter_trace_file(path):
                stats.note(item)
                if not isinstance(item, SegmentError):
                    batch.append(item)
                    if len(batch) >= 4096:
                        self.on_events(path, batch)
                        batch = []
        except TraceFileError as exc:
            log.error("%s", exc)
        if batch:
            self.on_events(path, batch)
        self.metrics.flush()
        self.file_stats[path] = stats
        (log.warning if stats.errors else log.info)("%s", describe(path, stats))
        return stats

    def collect_into(self, fams: Families) -> None:
        for peer in self.collector.stats.gone(self.gone_after_s):
            self.metrics.node_gone(peer)
        self.metrics.collect_into(fams)
        out = fams.scoped({})
        c = self.collector.stats
        if self._thread is not None:
            out.gauge("libp2p_pubsub_collector_streams", "Remote-tracer streams open now.", c.streams_active)
            out.counter(
                "libp2p_pubsub_collector_streams_accepted", "Remote-tracer streams accepted.", c.streams_accepted
            )
            out.counter(
                "libp2p_pubsub_collector_streams_refused",
                "Remote-tracer streams refused (over the total or per-peer cap).",
                c.streams_refused,
            )
            out.counter("libp2p_pubsub_collector_batches", "TraceEventBatches received.", c.batches)
            out.counters(
                "libp2p_pubsub_collector_errors",
                "Remote-tracer streams cut off, by reason.",
                "reason",
                c.errors,
                known=("gzip", "oversized", "protobuf", "varint", "stream"),
            )
        errors: dict[str, int] = {}
        for s in self.file_stats.values():
            for reason, n in s.errors.items():
                errors[reason] = errors.get(reason, 0) + n
        if self.file_stats:
            out.counters("libp2p_pubsub_file_errors", "Damaged stretches skipped in trace files.", "reason", errors)

    async def stop(self) -> None:
        if self._thread is not None:
            err = await self._thread.stop(timeout=4.0)
            if err is not None:
                log.debug("pubsub collector shutdown: %r", err)
        if self.spans is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.spans.shutdown)


async def start_pubsub_from_args(hub: Any, args: argparse.Namespace) -> PubsubSource | None:
    """The pubsub source the flags ask for, started; None when neither a listen address nor a file is set."""
    listen = getattr(args, "pubsub_listen", None)
    files = list(getattr(args, "pubsub_files", None) or [])
    if not listen and not files:
        return None
    topics = [t.strip() for t in (getattr(args, "pubsub_topics", "") or "").split(",") if t.strip()]
    metrics = PubsubMetrics(
        hub.cardinality,
        topics=topics,
        topic_cap=max(0, getattr(args, "pubsub_topic_cap", 32)),
        ttl_s=max(0.0, getattr(args, "pubsub_window", 120.0)),
        max_messages=max(1, getattr(args, "pubsub_max_messages", 50_000)),
    )
    spans = None
    from exporter.sinks.otel import config_from_args

    cfg = config_from_args(args)
    if cfg is not None:
        from exporter.sinks.pubsub_spans import PubsubSpans

        spans = PubsubSpans(cfg, ratio=min(1.0, max(0.0, getattr(args, "tracing_sample_pubsub", 1.0))))
    source = PubsubSource(hub, metrics, spans)
    for path in files:
        await asyncio.get_running_loop().run_in_executor(None, source.read_file, path)
    if listen:
        seed_hex = getattr(args, "pubsub_seed", None)
        try:
            seed = bytes.fromhex(seed_hex) if seed_hex else None
            if seed is not None and len(seed) != 32:
                raise ValueError("needs 64 hex digits")
        except ValueError as exc:
            raise SystemExit(f"libp2p-exporter: --pubsub.identity-seed: {exc}") from exc
        try:
            await source.start_collector(listen, seed)
        except Exception as exc:
            raise SystemExit(f"libp2p-exporter: cannot run the pubsub collector on {listen}: {exc}") from exc
    return source
