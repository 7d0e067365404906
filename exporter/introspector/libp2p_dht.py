"""The DHT subsystem of the py-libp2p provider: the routing table by common prefix length, and
query counters and events from wrappers around the DHT's query calls and its Kademlia handler.

A mixin of ``Libp2pIntrospection`` (libp2p_provider.py), which owns the state it uses. The key
helpers decide what a remote peer's key may become in an event: a peer id, or capped text.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import trio
from libp2p.kad_dht import common as kad_common

from exporter.introspector.api import now_ms
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.varint import read_varint

_INBOUND_PEEK = 8192  # bytes of an inbound DHT stream kept to learn the request type
_MAX_KEY_CHARS = 256  # a DHT key in an event; the remote peer chooses it
# Kademlia request type -> the observer's query type (PEER and PING extend its CONTENT/PROVIDER/VALUE).
_KAD_TYPES = {0: "VALUE", 1: "VALUE", 2: "PROVIDER", 3: "PROVIDER", 4: "PEER", 5: "PING"}
_OUTBOUND_CALLS = {
    "find_peer": ("PEER", "API"),
    "get_value": ("VALUE", "API"),
    "put_value": ("VALUE", "API"),
    "provide": ("PROVIDER", "API"),
    "find_providers": ("PROVIDER", "API"),
    "refresh_routing_table": ("PEER", "DISCOVERY"),
}


def _cpl(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) * 8 - x.bit_length()


class _DhtInstrumentation:
    """Snapshot and query wrappers for a KadDHT; the state is set up by ``Libp2pIntrospection``."""

    host: Any
    dht: Any
    peer_id: str
    start_ts: int
    _key: bytes
    _dht_seen: dict[str, int]
    _queries: dict[str, list[int]]
    _query_ids: itertools.count[int]
    _wrapped: list[tuple[Any, str, Any]]

    def _publish(self, name: str, content: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- DHT ---------------------------------------------------------------------------------
    def snapshot_dht(self) -> pb.DHT:
        dht = self.dht
        table = dht.routing_table
        now = now_ms()
        out = pb.DHT(protocol=str(getattr(dht, "protocol_prefix", "/ipfs")) + "/kad/1.0.0", enabled=True)
        out.start_ts = self.start_ts
        first_bucket = table.buckets[0] if table.buckets else None
        out.params.k = int(getattr(first_bucket, "bucket_size", kad_common.BUCKET_SIZE))
        out.params.alpha = kad_common.ALPHA
        out.params.beta = kad_common.BETA
        connected = self.host.get_network().connections
        by_cpl: dict[int, list[pb.DHT.PeerInDHT]] = {}
        present: set[str] = set()
        for bucket in list(table.buckets):
            for peer_id in list(bucket.peers.keys()):
                pid = str(peer_id)
                present.add(pid)
                since = self._dht_seen.setdefault(pid, now)
                cpl = _cpl(self._key, hashlib.sha256(peer_id.to_bytes()).digest())
                status = pb.DHT.PeerInDHT.ACTIVE if connected.get(peer_id) else pb.DHT.PeerInDHT.MISSING
                by_cpl.setdefault(cpl, []).append(
                    pb.DHT.PeerInDHT(peer_id=pid, status=status, age_in_bucket=min(now - since, 2**32 - 1))
                )
        for gone in set(self._dht_seen) - present:
            del self._dht_seen[gone]
        for cpl in sorted(by_cpl):
            out.buckets.add(cpl=cpl).peers.extend(by_cpl[cpl])
        for direction, gauge in (("in", out.incoming_queries), ("out", out.outgoing_queries)):
            gauge.success, gauge.error, gauge.timeout = self._queries[direction]
        return out

    def _record_query(self, direction: str, result: str, content: dict[str, Any]) -> None:
        self._queries[direction][("SUCCESS", "ERROR", "TIMEOUT").index(result)] += 1
        content.update(
            direction="INBOUND" if direction == "in" else "OUTBOUND",
            queryId=f"{self.peer_id[-8:]}-{next(self._query_ids)}",
            result=result,
        )
        self._publish("InboundDHTQuery" if direction == "in" else "OutboundDHTQuery", content)

    def _instrument_dht(self) -> None:
        dht = self.dht
        for name, (qtype, trigger) in _OUTBOUND_CALLS.items():
            original = getattr(dht, name, None)
            if original is None:
                continue
            self._wrapped.append((dht, name, dht.__dict__.get(name)))
            setattr(dht, name, self._outbound(original, qtype, trigger))
        proto = getattr(kad_common, "PROTOCOL_ID", "/ipfs/kad/1.0.0")
        mode = str(getattr(getattr(dht, "mode", None), "name", getattr(dht, "mode", ""))).upper()
        if "SERVER" in mode and hasattr(dht, "handle_stream"):
            self.host.set_stream_handler(proto, self._inbound(dht.handle_stream))

    def _outbound(self, call: Callable[..., Awaitable[Any]], qtype: str, trigger: str) -> Callable[..., Awaitable[Any]]:
        """A wrapper that times one DHT query and counts it by result (None/False = not found = ERROR)."""

        @wraps(call)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.monotonic()
            target = args[0] if args else kwargs.get("peer_id", kwargs.get("key", ""))
            result = "ERROR"
            try:
                value = await call(*args, **kwargs)
                result = "ERROR" if value is None or value is False else "SUCCESS"
                if call.__name__ in ("put_value", "refresh_routing_table"):
                    result = "SUCCESS"  # these return None on success
                return value
            except (trio.TooSlowError, TimeoutError):
                result = "TIMEOUT"
                raise
            finally:
                # A cancelled query (shutdown) is not a result; everything else is counted once.
                if not _being_cancelled():
                    self._record_query(
                        "out",
                        result,
                        {
                            "peerIds": [],
                            "targetPeerId": str(target) if qtype == "PEER" else "",
                            "key": "" if qtype == "PEER" else _key_text(target),
                            "totalTimeMs": int((time.monotonic() - t0) * 1000),
                            "totalSteps": 0,
                            "trigger": trigger,
                            "type": qtype,
                        },
                    )

        return wrapper

    def _inbound(self, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """Wraps the Kademlia stream handler: one inbound query per stream, typed from its first message."""

        async def wrapper(stream: Any) -> None:
            t0 = time.monotonic()
            peeked = bytearray()
            read = stream.read

            async def peeking_read(*args: Any, **kwargs: Any) -> bytes:
                data: bytes = await read(*args, **kwargs)
                if len(peeked) < _INBOUND_PEEK:
                    peeked.extend(data[: _INBOUND_PEEK - len(peeked)])
                return data

            stream.read = peeking_read
            result = "ERROR"
            try:
                await handler(stream)
                result = "SUCCESS"
            except (trio.TooSlowError, TimeoutError):
                result = "TIMEOUT"
                raise
            finally:
                if not _being_cancelled():
                    remote = ""
                    with contextlib.suppress(Exception):
                        remote = str(stream.muxed_conn.peer_id)
                    qtype, target, key = _kad_request(bytes(peeked))
                    self._record_query(
                        "in",
                        result,
                        {
                            "peerIds": [remote] if remote else [],
                            "targetPeerId": target,
                            "key": key,
                            "totalTimeMs": int((time.monotonic() - t0) * 1000),
                            "totalSteps": 1,
                            "trigger": "API",
                            "type": qtype,
                        },
                    )

        return wrapper


def _peer_id_text(key: bytes) -> str:
    """The peer id ``key`` is, in base58, when it decodes as a peer id's multihash; else ''.

    A peer id is an identity multihash (code 0x00, the key inline, at most 42 bytes) or a sha2-256
    one (code 0x12, 32 bytes). Anything else (a record name such as ``/pk/...`` or ``demo-1``) is not.
    """
    identity = len(key) >= 3 and key[0] == 0x00 and key[1] == len(key) - 2 <= 42
    sha256 = len(key) == 34 and key[0] == 0x12 and key[1] == 0x20
    if not (identity or sha256):
        return ""
    from libp2p.peer.id import ID

    return str(ID(key))


def _key_text(key: Any) -> str:
    """A DHT key for an event: printable text as it is, other bytes (a content hash) in base58; capped."""
    if isinstance(key, str):
        text = key
    elif isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
        if raw and all(32 <= b < 127 for b in raw):
            text = raw.decode("ascii")
        else:
            import base58

            text = base58.b58encode(raw).decode("ascii") if raw else ""
    else:
        text = str(key) if key is not None else ""
    return text[:_MAX_KEY_CHARS]


def _kad_request(data: bytes) -> tuple[str, str, str]:
    """(type, target peer id, other key) of the first varint-framed Kademlia message in ``data``.

    The key goes to the target only when it is a peer id (a FIND_NODE for a peer); a FIND_NODE
    for a record's key, as a lookup does, and every other request carry it as ``key`` instead.
    """
    try:
        from libp2p.kad_dht.pb.kademlia_pb2 import Message

        head = read_varint(data, 0)
        if head is None:
            return "", "", ""
        length, pos = head
        msg = Message()
        msg.ParseFromString(data[pos : pos + length])
        qtype = _KAD_TYPES.get(int(msg.type), "")
        target = _peer_id_text(msg.key) if msg.type == 4 else ""  # FIND_NODE
        return qtype, target, "" if target else _key_text(msg.key)
    except Exception:
        return "", "", ""


def _being_cancelled() -> bool:
    try:
        return trio.current_effective_deadline() == float("-inf")
    except RuntimeError:
        return False
