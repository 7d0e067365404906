"""A remote-tracer collector: go-libp2p-pubsub nodes send their trace events here over libp2p.

A go node configured with ``pubsub.WithEventTracer(NewRemoteTracer(ctx, host, collectorInfo))``
opens a stream ``/libp2p/pubsub/tracer/1.0.0`` to the collector and writes one gzip stream of
varint-delimited ``TraceEventBatch``es, flushing after each batch, closing it (gzip trailer, stream
close) on shutdown and reopening a new stream after an error. This collector accepts such streams
from any number of peers on a py-libp2p host (trio) and hands every event to a callback, as
``traced`` does before it writes files.

Bounds: at most ``max_streams`` concurrent streams and ``max_streams_per_peer`` per peer (more are
reset and counted); a batch longer than ``max_batch`` bytes ends that stream (go's traced uses
4 MiB); decompression proceeds in chunks, so a gzip bomb costs time, never memory. Damage ends only
the stream it is on; it is counted by reason and logged once per reason (remote text escaped).
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

from exporter.pipeline.traces import CollectorStats
from exporter.protocol.framing import SegmentError
from exporter.protocol.pubsub_codec import MAX_BATCH, DelimitedDecoder, TraceEvent

log = logging.getLogger(__name__)
REMOTE_TRACER_PROTOCOL = "/libp2p/pubsub/tracer/1.0.0"
READ_CHUNK = 1 << 16
EventCallback = Callable[[str, list[TraceEvent]], None]  # (connection's peer id, events of one batch)


class TraceCollector:
    """Accepts remote-tracer streams on a py-libp2p host; call ``attach(host)`` on its trio thread."""

    def __init__(
        self,
        on_events: EventCallback,
        *,
        max_streams: int = 256,
        max_streams_per_peer: int = 4,
        max_batch: int = MAX_BATCH,
        stats: CollectorStats | None = None,
    ) -> None:
        self.on_events = on_events
        self.max_streams = max_streams
        self.max_streams_per_peer = max_streams_per_peer
        self.max_batch = max_batch
        self.stats = stats if stats is not None else CollectorStats()  # shared with the metrics when given
        self._logged: set[str] = set()

    def attach(self, host: Any) -> None:
        host.set_stream_handler(REMOTE_TRACER_PROTOCOL, self.handle_stream)

    def _error(self, peer: str, reason: str, detail: str) -> None:
        self.stats.errors[reason] += 1
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning(
                "pubsub trace stream from %s: %s: %s (further %s errors are counted only)",
                peer,
                reason,
                ascii(detail)[:200],
                reason,
            )

    async def handle_stream(self, stream: Any) -> None:
        peer = str(getattr(getattr(stream, "muxed_conn", None), "peer_id", "?"))
        stats = self.stats
        if stats.streams_active >= self.max_streams or stats.per_peer_streams[peer] >= self.max_streams_per_peer:
            stats.streams_refused += 1
            self._error(peer, "refused", "too many concurrent trace streams")
            await _reset(stream)
            return
        stats.streams_accepted += 1
        stats.streams_active += 1
        stats.ended.pop(peer, None)
        stats.per_peer_streams[peer] += 1
        try:
            clean = await self._read(stream, peer)
        except Exception as exc:  # the stream broke (reset, connection lost): normal for a tracer
            clean = False
            self._error(peer, "stream", repr(exc))
        finally:
            stats.streams_active -= 1
            stats.per_peer_streams[peer] -= 1
            if stats.per_peer_streams[peer] <= 0:
                del stats.per_peer_streams[peer]
                stats.ended[peer] = time.monotonic()  # its last stream: the node may be gone
        if clean:
            await _close(stream)
        else:
            await _reset(stream)

    async def _read(self, stream: Any, peer: str) -> bool:
        """Read one tracer stream to its end; False when it had to be cut off."""
        inflater = zlib.decompressobj(wbits=31)
        decoder = DelimitedDecoder(max_record=self.max_batch, resync=False)
        while not inflater.eof:
            data = await stream.read(READ_CHUNK)
            if not data:
                break
            try:
                out = inflater.decompress(data, READ_CHUNK)
                while True:
                    if not self._deliver(decoder, out, peer):
                        return False
                    if not inflater.unconsumed_tail:
                        break
                    out = inflater.decompress(inflater.unconsumed_tail, READ_CHUNK)
            except zlib.error as exc:
                self._error(peer, "gzip", str(exc))
                return False
        # EOF without a gzip trailer is a node that went away: every whole batch was still taken.
        return self._deliver(decoder, b"", peer, final=True)

    def _deliver(self, decoder: DelimitedDecoder, data: bytes, peer: str, final: bool = False) -> bool:
        decoder.feed(data)
        records = decoder.records
        events: list[TraceEvent] = []
        for item in decoder.drain(final=final):
            if isinstance(item, SegmentError):
                self._error(peer, item.reason, item.detail)
                return False
            events.append(item)
        self.stats.batches += decoder.records - records
        if events:
            self.stats.events += len(events)
            try:
                self.on_events(peer, events)
            except Exception as exc:  # the consumer's bug must not kill the stream loop silently
                self._error(peer, "callback", repr(exc))
        return not decoder.failed


async def _reset(stream: Any) -> None:
    with contextlib.suppress(Exception):
        await stream.reset()


async def _close(stream: Any) -> None:
    with contextlib.suppress(Exception):
        await stream.close()


async def run_collector_host(
    collector: TraceCollector,
    *,
    listen: str = "/ip4/127.0.0.1/tcp/0",
    key_seed: bytes | None = None,
    task_status: Any = None,
) -> None:
    """Trio: run a py-libp2p host that serves ``collector`` until cancelled.

    ``task_status.started((peer_id, [multiaddrs]))`` once listening. ``key_seed`` (32 bytes) keeps
    the collector's peer id stable across restarts, so nodes' tracer configuration stays valid.
    """
    import multiaddr
    import trio
    from libp2p import new_host

    key_pair = None
    if key_seed is not None:
        from libp2p.crypto.ed25519 import create_new_key_pair

        key_pair = create_new_key_pair(key_seed)
    host = new_host(key_pair=key_pair) if key_pair is not None else new_host()
    collector.attach(host)
    async with host.run([multiaddr.Multiaddr(listen)]):
        addrs = [str(a) for a in host.get_addrs()]
        if task_status is not None:
            task_status.started((str(host.get_id()), addrs))
        await trio.sleep_forever()
