"""Data providers for a running py-libp2p host (PyPI ``libp2p``; extra ``libp2p-exporter[libp2p]``).

``Libp2pIntrospection(host, dht=...)`` watches one host from the trio side and registers, on an
``Introspector``, providers for all five subsystems:

- connections, from the swarm plus notifee hooks: direction, remote and local multiaddrs,
  security and muxer, yamux RTT, and the handshake: ``open_ts`` when the raw connection entered
  security negotiation and ``upgraded_ts`` when the muxer was ready, timed by wrapping the swarm's
  upgrader on the instance (unset when not seen); streams inlined with protocol, direction, open
  and close times, and the ``streams`` field present even when empty. Closed connections and streams stay in the State (status CLOSED, ``close_ts``) for
  ``retention_ms``, then vanish, as docs/protocol.md §5 describes.
- traffic: py-libp2p does not count bytes, so we count them ourselves, contained to objects we
  own the knowledge of: when a connection is announced, the read/write methods of *that
  connection's* TCP stream object (``TrioTCPStream``) are wrapped on the instance (never the class)
  to add up bytes; the same is done per stream on ``NetStream`` for per-stream (so per-protocol)
  traffic. Handshake bytes sent before the connection is announced are not counted, nor are
  transports other than TCP (their connections carry no traffic field: proto3 unset).
  ``cum_packets`` is left unset: py-libp2p gives no packet boundaries.
- dht: routing-table buckets regrouped by common prefix length with our id (as go-libp2p reports
  them), each peer ACTIVE when connected and MISSING otherwise, its age since we first saw it;
  query counters by result from wrappers around the DHT's query calls (outbound: find_peer,
  get_value, put_value, provide, find_providers, refresh_routing_table; inbound: the Kademlia
  stream handler).
- events: ``PeerConnecting`` / ``PeerDisconnecting`` from the notifee, ``OutboundDHTQuery`` /
  ``InboundDHTQuery`` from the wrappers, with the observer UI's JSON keys; ``targetPeerId`` only
  when the query's key is a peer id, any other key under ``key``.

All libp2p objects are touched only on the trio thread: the providers hand a synchronous reader to
``TrioBridge.run`` (see bridge.py for the thread design).

This module is the public entry; the work sits beside it: records and byte counting in
libp2p_traffic.py, connection tracking in libp2p_connections.py, handshake timing in
libp2p_handshake.py, the DHT in libp2p_dht.py (mixins of ``Libp2pIntrospection``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import platform
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

import trio

from exporter.introspector.api import Introspector, event_type, now_ms
from exporter.introspector.bridge import AsyncioThread, TrioBridge
from exporter.introspector.endpoint import Endpoint
from exporter.introspector.peerstore_provider import PeerstoreSampler, record_agents
from exporter.protocol import introspection_pb2 as pb

try:  # the extra is optional; importing this module without it explains what to install
    from libp2p.abc import INotifee
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the py-libp2p provider needs the extra: pip install 'libp2p-exporter[libp2p]'") from exc

from exporter.introspector.libp2p_connections import _ConnectionTracking
from exporter.introspector.libp2p_dht import _DhtInstrumentation
from exporter.introspector.libp2p_dht import _kad_request as _kad_request  # tests reach it here
from exporter.introspector.libp2p_handshake import _HandshakeTiming
from exporter.introspector.libp2p_traffic import _Bytes, _ConnRec

__all__ = ["DEFAULT_RETENTION_MS", "EVENT_TYPES", "Libp2pIntrospection", "introspect_host"]

log = logging.getLogger(__name__)
Prop = pb.EventType.EventProperty
DEFAULT_RETENTION_MS = 120_000
# A busy node closes many streams within a retention period: keep the newest closed ones only.
MAX_CLOSED_CONNS = 1024
MAX_CLOSED_STREAMS_PER_CONN = 256

EVENT_TYPES = [
    event_type("PeerConnecting", {"peerId": Prop.PEERID, "transport": Prop.STRING, "role": Prop.STRING}),
    event_type(
        "PeerDisconnecting",
        {"peerId": Prop.PEERID, "transport": Prop.STRING, "openTime": Prop.TIME, "age": Prop.NUMBER},
    ),
    *(
        event_type(
            name,
            {
                "direction": Prop.STRING,
                "peerIds": (Prop.PEERID, True),
                "queryId": Prop.STRING,
                "targetPeerId": Prop.PEERID,  # only when the query's key is a peer id
                "key": Prop.STRING,  # the key when it is not a peer id (a record name, a content hash)
                "totalTimeMs": Prop.NUMBER,
                "totalSteps": Prop.NUMBER,
                "trigger": Prop.STRING,
                "type": Prop.STRING,
                "result": Prop.STRING,
            },
        )
        for name in ("InboundDHTQuery", "OutboundDHTQuery")
    ),
]


class _Notifee(INotifee):
    """Forwards swarm notifications to the introspection (runs on trio)."""

    def __init__(self, owner: Libp2pIntrospection) -> None:
        self.owner = owner

    async def opened_stream(self, network: Any, stream: Any) -> None:
        self.owner._stream_opened(stream)

    async def closed_stream(self, network: Any, stream: Any) -> None:
        self.owner._stream_closed(stream)

    async def connected(self, network: Any, conn: Any) -> None:
        self.owner._conn_opened(conn, announce=True)

    async def disconnected(self, network: Any, conn: Any) -> None:
        self.owner._conn_closed(conn)

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None


class Libp2pIntrospection(_ConnectionTracking, _HandshakeTiming, _DhtInstrumentation):
    """Makes one py-libp2p host (and optionally its KadDHT) introspectable.

    Create and ``attach()`` it on the trio thread; ``register(introspector, bridge)`` may be called
    from anywhere. ``snapshot_*`` methods must run on the trio thread (the providers make sure of it).
    """

    def __init__(
        self, host: Any, *, dht: Any = None, retention_ms: int = DEFAULT_RETENTION_MS, count_bytes: bool = True
    ) -> None:
        self.host = host
        self.dht = dht
        self.retention_ms = retention_ms
        self.count_bytes = count_bytes
        self.max_closed_conns = MAX_CLOSED_CONNS
        self.max_closed_streams = MAX_CLOSED_STREAMS_PER_CONN
        self.peer_id = str(host.get_id())
        self._key = hashlib.sha256(host.get_id().to_bytes()).digest()
        self._ids = itertools.count(1)
        self._conns: dict[int, _ConnRec] = {}  # id(SwarmConn) -> record
        self._total = _Bytes()
        self._dht_seen: dict[str, int] = {}  # peer id -> ms first seen in the routing table
        self._queries = {"in": [0, 0, 0], "out": [0, 0, 0]}  # success, error, timeout
        self._query_ids = itertools.count(1)
        self._introspector: Introspector | None = None
        self._notifee = _Notifee(self)
        self._wrapped: list[tuple[Any, str, Any]] = []
        # Handshake times measured around the swarm's upgrader, until the connection is announced:
        # id(secured conn) -> (conn, start ms); id(muxed conn) -> (conn, start ms, end ms). Bounded:
        # a handshake that fails leaves an entry behind, dropped oldest first.
        self._securing: OrderedDict[int, tuple[Any, int]] = OrderedDict()
        self._upgraded: OrderedDict[int, tuple[Any, int, int]] = OrderedDict()
        self.start_ts = now_ms()
        self.attached = False

    # -- setup ------------------------------------------------------------------------------
    def attach(self) -> None:
        """Hook into the host (notifee, DHT wrappers) and take in connections that already exist."""
        if self.attached:
            return
        network = self.host.get_network()
        network.register_notifee(self._notifee)
        for conns in list(network.connections.values()):
            for conn in list(conns):
                self._conn_opened(conn, announce=False)
        self._instrument_upgrader(network)
        if self.dht is not None:
            self._instrument_dht()
        record_agents()  # identify keeps agent versions from now on, for the peerstore extension
        self.attached = True

    def detach(self) -> None:
        if not self.attached:
            return
        network = self.host.get_network()
        if self._notifee in getattr(network, "notifees", []):
            network.notifees.remove(self._notifee)
        for obj, attr, original in reversed(self._wrapped):
            if original is None:
                obj.__dict__.pop(attr, None)
            else:
                setattr(obj, attr, original)
        self._wrapped.clear()
        self.attached = False

    def register(self, introspector: Introspector, bridge: TrioBridge) -> None:
        """Register this host's providers for every subsystem on ``introspector``."""
        self._introspector = introspector

        def on_trio(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
            async def call() -> Any:
                return await bridge.run(fn)

            return call

        runtime = pb.Runtime(
            implementation="py-libp2p",
            version=_version("libp2p"),
            platform=f"{platform.python_implementation()} {platform.python_version()} {sys.platform}",
            peer_id=self.peer_id,
        )
        introspector.register("runtime", lambda: runtime, name="py-libp2p")
        introspector.register("events", lambda: EVENT_TYPES, name="py-libp2p")
        introspector.register("connections", on_trio(self.snapshot_connections), name="py-libp2p")
        introspector.register("traffic", on_trio(self.snapshot_traffic), name="py-libp2p")
        if self.dht is not None:
            introspector.register("dht", on_trio(self.snapshot_dht), name="py-libp2p-kad")
        # The peerstore extension (exporter/introspector/peerstore_provider.py).
        introspector.register("peerstore", on_trio(PeerstoreSampler(self.host.get_peerstore())), name="py-libp2p")

    def _publish(self, name: str, content: dict[str, Any]) -> None:
        if self._introspector is not None:
            self._introspector.publish(name, content)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


@asynccontextmanager
async def introspect_host(
    host: Any,
    *,
    dht: Any = None,
    listen_host: str = "127.0.0.1",
    port: int = 0,
    retention_ms: int = DEFAULT_RETENTION_MS,
) -> AsyncIterator[Endpoint]:
    """For trio programs: serve ``host``'s introspection on ``ws://127.0.0.1:PORT/introspect`` in this block.

    The Endpoint runs on an asyncio loop in its own thread (see bridge.py); ``endpoint.listen_addrs()``
    says where. Use it inside ``host.run(...)``::

        async with host.run(listen_addrs), introspect_host(host, dht=dht) as endpoint:
            print(endpoint.listen_addrs())
    """
    insp = Libp2pIntrospection(host, dht=dht, retention_ms=retention_ms)
    insp.attach()
    intro = Introspector(name=insp.peer_id)
    insp.register(intro, TrioBridge.current())
    aio = AsyncioThread()
    endpoint = Endpoint(intro, host=listen_host, port=port)
    try:
        await aio.call(endpoint.start())
        yield endpoint
    finally:
        with trio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await aio.call(endpoint.close())
            await trio.to_thread.run_sync(aio.close)
            insp.detach()
