"""Connection and stream records for the py-libp2p provider, and the byte counting under them.

py-libp2p does not count bytes, so ``_count`` wraps ``read``/``write`` on one object's instance
(a connection's TCP stream, a ``NetStream``), never its class; the records hold what they add up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from exporter.protocol import introspection_pb2 as pb


@dataclass
class _Bytes:
    """Cumulative bytes in and out, plus the rate over the last second or more."""

    bytes_in: int = 0
    bytes_out: int = 0
    _mark: tuple[float, int, int] = (0.0, 0, 0)
    _bw: tuple[int, int] = (0, 0)

    def rate(self, now: float) -> tuple[int, int]:
        t, i, o = self._mark
        if not t:
            self._mark = (now, self.bytes_in, self.bytes_out)
        elif now - t >= 1.0:
            self._bw = (int((self.bytes_in - i) / (now - t)), int((self.bytes_out - o) / (now - t)))
            self._mark = (now, self.bytes_in, self.bytes_out)
        return self._bw

    def fill(self, traffic: pb.Traffic, now: float) -> None:
        bw_in, bw_out = self.rate(now)
        traffic.traffic_in.cum_bytes = self.bytes_in
        traffic.traffic_in.inst_bw = bw_in
        traffic.traffic_out.cum_bytes = self.bytes_out
        traffic.traffic_out.inst_bw = bw_out


@dataclass
class _StreamRec:
    id: bytes
    stream: Any
    role: pb.Role
    open_ts: int
    protocol: str = ""
    close_ts: int = 0
    traffic: _Bytes = field(default_factory=_Bytes)


@dataclass
class _ConnRec:
    id: bytes
    conn: Any
    peer_id: str
    role: pb.Role
    open_ts: int
    upgraded_ts: int
    local: str
    remote: str
    transport: str
    security: str
    muxer: str
    traffic: _Bytes | None
    close_ts: int = 0
    streams: dict[int, _StreamRec] = field(default_factory=dict)  # id(stream) -> record, open and closed


def _chain(conn: Any) -> Iterable[Any]:
    """The objects under a SwarmConn down to the socket: muxer, secure session, ..., TCP stream."""
    obj = getattr(conn, "muxed_conn", None)
    seen = 0
    while obj is not None and seen < 8:
        yield obj
        seen += 1
        nxt = None
        for attr in ("secured_conn", "read_writer", "read_write_closer", "conn", "stream"):
            cand = getattr(obj, attr, None)
            if cand is not None and cand is not obj:
                nxt = cand
                break
        obj = nxt


def _tcp_stream(conn: Any) -> Any:
    """The wrapper whose ``stream`` is the trio SocketStream (py-libp2p's TrioTCPStream), if any."""
    for obj in _chain(conn):
        if isinstance(getattr(obj, "stream", None), trio.SocketStream):
            return obj
    return None


def _addr(sockaddr: Any) -> str:
    try:
        host, port = sockaddr[0], sockaddr[1]
    except (TypeError, IndexError):
        return ""
    return f"/ip6/{host}/tcp/{port}" if ":" in str(host) else f"/ip4/{host}/tcp/{port}"


def _transport_id(multiaddr: str) -> str:
    """``/ip4/1.2.3.4/tcp/4001`` -> ``ip4+tcp``, the text the Go server put in transport_id."""
    parts = [p for p in multiaddr.split("/") if p]
    names = parts[0::2] if parts else []
    return "+".join(n for n in names if n not in ("p2p", "ipfs"))


def _count(obj: Any, counter: Callable[[int, int], None]) -> bool:
    """Wrap ``obj.read``/``obj.write`` on this instance so they report bytes to ``counter(in, out)``."""
    read, write = getattr(obj, "read", None), getattr(obj, "write", None)
    if read is None or write is None or getattr(obj, "_introspection_counted", False):
        return False

    async def counted_read(*args: Any, **kwargs: Any) -> bytes:
        data: bytes = await read(*args, **kwargs)
        if data:
            counter(len(data), 0)
        return data

    async def counted_write(data: bytes, *args: Any, **kwargs: Any) -> Any:
        result = await write(data, *args, **kwargs)
        counter(0, len(data))
        return result

    obj.read = counted_read
    obj.write = counted_write
    obj._introspection_counted = True
    return True


def _protocol(stream: Any) -> str:
    try:
        return str(stream.get_protocol() or "")
    except Exception:
        return ""


def _is_closed(conn: Any) -> bool:
    ev = getattr(conn, "event_closed", None)
    return bool(ev.is_set()) if ev is not None else bool(getattr(conn, "is_closed", False))
