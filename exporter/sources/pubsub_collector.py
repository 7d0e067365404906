"""A remote-tracer collector: go-libp2p-pubsub nodes send their trace events here over libp2p.

A go node configured with ``pubsub.WithEventTracer(NewRemoteTracer(ctx, host, collectorInfo))``
opens a stream ``/libp2p/pubsub/tracer/1.0.0`` to the collector and writes one gzip stream of
varint-delimited ``TraceEventBatch``es, flushing after each batch, closing it (gzip trailer, stream
close) on shutdown and reopening a new stream after an error. This collector accepts such streams
from any number of peers on a py-libp2p host (trio) and hands every event to a callback, as
``traced`` does before it writes files.

Bounds: at most ``max_streams`` concurrent streams and ``max_streams_per_peer`` per peer. A new
stream is always admitted: when a bound is reached, the stream that has been quiet longest (of all,
or of that peer's) is reset to make room (``errors{reason="evicted"}``), so peers that only hold
streams cannot keep out one that sends. A stream that delivers nothing for ``idle_timeout_s`` is reset
(``errors{reason="idle"}``); go's tracer opens a new one with its next batch. Before any of that, on
the host (``run_collector_host``), at most ``max_pending_connections`` TCP connections may be in their
security handshake: a new one closes the oldest, so idle raw connections cannot fill the host's
inbound connection slots either. A batch longer than ``max_batch`` bytes ends that stream (go's traced uses
4 MiB); decompression proceeds in chunks, so a gzip bomb costs time, never memory. Damage ends only
the stream it is on; it is counted by reason and logged once per reason (remote text escaped).
"""

from __future__ import annotations

import contextlib
import logging
import math
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
IDLE_TIMEOUT_S = 300.0  # a tracer stream with nothing for this long is reset
MAX_PENDING_CONNECTIONS = 64  # raw TCP connections still in the security handshake


class _Slot:
    """One accepted stream: whose, and when it last delivered bytes (monotonic)."""

    __slots__ = ("evicted", "last_active", "peer", "stream")

    def __init__(self, stream: Any, peer: str) -> None:
        self.stream = stream
        self.peer = peer
        self.last_active = time.monotonic()
        self.evicted = False


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
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_pending_connections: int = MAX_PENDING_CONNECTIONS,
    ) -> None:
        self.on_events = on_events
        self.max_streams = max_streams
        self.max_streams_per_peer = max_streams_per_peer
        self.max_batch = max_batch
        self.idle_timeout_s = idle_timeout_s
        self.max_pending_connections = max_pending_connections
        self._slots: dict[int, _Slot] = {}  # by id(stream), oldest first
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

    def _make_room(self, peer: str) -> list[_Slot] | None:
        """At a bound, evict the quietest streams (``peer``'s own when its bound is what binds) and
        return them; None when nothing can be evicted (bounds of 0)."""
        stats = self.stats
        evicted: list[_Slot] = []
        while stats.per_peer_streams[peer] >= self.max_streams_per_peer or len(self._slots) >= self.max_streams:
            own = stats.per_peer_streams[peer] >= self.max_streams_per_peer
            candidates = [s for s in self._slots.values() if not own or s.peer == peer]
            if not candidates:
                return None
            victim = min(candidates, key=lambda s: s.last_active)
            victim.evicted = True
            self._release(victim)  # the slot is the newcomer's from now on
            self._error(victim.peer, "evicted", "the quietest stream, reset to make room for a new one")
            evicted.append(victim)
        return evicted

    def _release(self, slot: _Slot) -> None:
        stats = self.stats
        if self._slots.pop(id(slot.stream), None) is None:
            return
        stats.streams_active -= 1
        stats.per_peer_streams[slot.peer] -= 1
        if stats.per_peer_streams[slot.peer] <= 0:
            del stats.per_peer_streams[slot.peer]
            stats.ended[slot.peer] = time.monotonic()  # its last stream: the node may be gone

    async def handle_stream(self, stream: Any) -> None:
        peer = str(getattr(getattr(stream, "muxed_conn", None), "peer_id", "?"))
        stats = self.stats
        evicted = self._make_room(peer)
        if evicted is None:
            stats.streams_refused += 1
            self._error(peer, "refused", "too many concurrent trace streams")
            await _reset(stream)
            return
        slot = _Slot(stream, peer)
        self._slots[id(stream)] = slot
        stats.streams_accepted += 1
        stats.streams_active += 1
        stats.ended.pop(peer, None)
        stats.per_peer_streams[peer] += 1
        for victim in evicted:
            await _reset(victim.stream)  # its reader ends with an error, already counted as the eviction
        try:
            clean = await self._read(slot)
        except Exception as exc:  # the stream broke (reset, connection lost): normal for a tracer
            clean = False
            if not slot.evicted:
                self._error(peer, "stream", repr(exc))
        finally:
            self._release(slot)
        if clean:
            await _close(stream)
        else:
            await _reset(stream)

    async def _read(self, slot: _Slot) -> bool:
        """Read one tracer stream to its end; False when it had to be cut off."""
        import trio

        stream, peer = slot.stream, slot.peer
        inflater = zlib.decompressobj(wbits=31)
        decoder = DelimitedDecoder(max_record=self.max_batch, resync=False)
        idle = self.idle_timeout_s if self.idle_timeout_s > 0 else math.inf
        while not inflater.eof:
            data = None
            with trio.move_on_after(idle):
                data = await stream.read(READ_CHUNK)
            if data is None:
                self._error(peer, "idle", f"nothing received for {self.idle_timeout_s:g}s")
                return False
            if slot.evicted:
                return False
            if not data:
                break
            slot.last_active = time.monotonic()
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
    bound_handshakes(host.get_network(), collector.max_pending_connections, collector.stats)
    async with host.run([multiaddr.Multiaddr(listen)]):
        addrs = [str(a) for a in host.get_addrs()]
        if task_status is not None:
            task_status.started((str(host.get_id()), addrs))
        await trio.sleep_forever()


def bound_handshakes(swarm: Any, max_pending: int, stats: CollectorStats) -> None:
    """At most ``max_pending`` inbound connections in their security handshake at once; a new one
    closes the oldest (counted as ``errors{reason="handshake_evicted"}``).

    py-libp2p refuses new inbound connections once its inbound cap (250 by default) is taken, and a
    connection that never speaks holds its place for the whole upgrade timeout (10 s): 300 idle TCP
    connections kept every tracer out. This wraps the swarm's inbound handler and upgrade (looked up
    per connection, so instance attributes take effect) to keep the waiting ones few and fresh.
    """
    handle = getattr(swarm, "_handle_inbound_connection", None)
    upgrade = getattr(swarm, "upgrade_inbound_raw_conn", None)
    if handle is None or upgrade is None:  # another py-libp2p: its own limits apply
        log.warning("pubsub collector: cannot bound pending handshakes on this py-libp2p version")
        return
    pending: dict[int, Any] = {}  # id(raw stream) -> raw stream, oldest first
    limit = max(1, max_pending)

    async def guarded_handle(raw: Any, maddr: Any) -> None:
        while len(pending) >= limit:
            oldest = pending.pop(next(iter(pending)))
            stats.errors["handshake_evicted"] += 1
            with contextlib.suppress(Exception):
                await oldest.close()  # its handshake fails at once and gives its inbound slot back
        pending[id(raw)] = raw
        try:
            await handle(raw, maddr)
        finally:
            pending.pop(id(raw), None)

    async def guarded_upgrade(raw_conn: Any, maddr: Any) -> Any:
        try:
            return await upgrade(raw_conn, maddr)
        finally:
            pending.pop(id(getattr(raw_conn, "stream", None)), None)  # upgraded (or failed): no longer waiting

    swarm._handle_inbound_connection = guarded_handle
    swarm.upgrade_inbound_raw_conn = guarded_upgrade
