"""Text multiaddrs, read once: the label values metrics need and the socket parts spans need.

libp2p gives text such as ``/ip4/1.2.3.4/udp/4001/quic-v1/p2p/12D3KooW...``; Go servers also put
ids such as ``ip4+tcp`` in ``transport_id``. One tokenizer splits either into protocol names and
their values; ``transport_of`` and ``ip_version_of`` read the names (go-libp2p's ``transport`` and
``ip_version`` labels), ``parse`` reads host, port and relay for OpenTelemetry attributes. Anything
that does not parse (the observer mock puts bare peer ids in ``EndpointPair``) yields ``unknown`` or
an empty ``Addr``, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.model.labels import OTHER, UNKNOWN

_HOSTS = {"ip4": "ipv4", "ip6": "ipv6", "dns": "", "dns4": "ipv4", "dns6": "ipv6", "dnsaddr": ""}
# Components that take one value; anything else is a bare protocol name.
_WITH_VALUE = {*_HOSTS, "tcp", "udp", "p2p", "ipfs", "ip6zone", "unix", "sni", "certhash", "dccp", "sctp"}
# Names that make a text look like an address at all (a bare peer id has none of them).
_NETWORK = frozenset({"ip4", "ip6", "dns", "dns4", "dns6", "dnsaddr", "tcp", "udp", "p2p-circuit", "unix"})
# Checked in this order: the most specific transport wins.
_TRANSPORTS = ("webrtc-direct", "webrtc", "webtransport", "quic-v1", "quic", "wss")


def components(addr: str) -> list[tuple[str, str | None]]:
    """``addr`` as (protocol, value) pairs; a Go-style ``ip4+tcp`` id gives names without values.

    ``/unix`` takes the rest of the address as its path.
    """
    if not addr.startswith("/"):
        return [(name, None) for name in addr.replace("+", "/").split("/") if name]
    parts = [p for p in addr.split("/") if p]
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(parts):
        name = parts[i]
        if name == "unix" and i + 1 < len(parts):
            out.append((name, "/" + "/".join(parts[i + 1 :])))
            break
        value = parts[i + 1] if name in _WITH_VALUE and i + 1 < len(parts) else None
        out.append((name, value))
        i += 2 if value is not None else 1
    return out


def transport_of(*addrs: str) -> str:
    """go-libp2p's transport label from the first of ``addrs`` that reads as an address."""
    for addr in addrs:
        if not addr:
            continue
        names = {name for name, _ in components(addr)}
        if not names & _NETWORK:
            continue
        if "p2p-circuit" in names:
            return "circuit"
        for name in _TRANSPORTS:
            if name in names:
                return name
        if "ws" in names:
            return "wss" if "tls" in names else "ws"
        if "tcp" in names:
            return "tcp"
        return OTHER
    return UNKNOWN


def ip_version_of(*addrs: str) -> str:
    """``ip4`` or ``ip6`` from the first of ``addrs`` that starts with an IP or DNS component."""
    for addr in addrs:
        parts = components(addr)
        if parts and parts[0][0] in ("ip4", "dns4"):
            return "ip4"
        if parts and parts[0][0] in ("ip6", "dns6"):
            return "ip6"
    return UNKNOWN


@dataclass(frozen=True, slots=True)
class Addr:
    host: str = ""
    port: int | None = None
    network_type: str = ""  # OTel network.type: ipv4 | ipv6 | "" (unknown)
    transport: str = ""  # OTel network.transport: tcp | udp | quic | unix | ""
    peer_id: str = ""  # a trailing /p2p/<id>
    relayed: bool = False  # the address goes through /p2p-circuit

    @property
    def parsed(self) -> bool:
        return bool(self.host)


def parse(addr: str) -> Addr:
    """The parts of ``addr`` that OTel attributes need; an empty ``Addr`` when it is not a multiaddr."""
    if not addr or not addr.startswith("/"):
        return Addr()
    host = net = l4 = peer = ""
    port: int | None = None
    relayed = quic = False
    for name, value in components(addr):
        if name == "p2p-circuit":
            relayed = True
            # What follows describes the far peer, reached through the relay; keep the relay's socket.
        elif name in _HOSTS and value is not None and not relayed and not host:
            host, net = value, _HOSTS[name]
        elif name in ("tcp", "udp") and value is not None and not relayed and port is None:
            l4 = name
            port = int(value) if value.isdigit() and int(value) < 65536 else None
        elif name in ("quic", "quic-v1") and not relayed:
            quic = True
        elif name == "unix" and value is not None and not host:
            host, l4 = value, "unix"
        elif name in ("p2p", "ipfs") and value is not None:
            peer = value
    if quic and l4 == "udp":
        l4 = "quic"
    return Addr(host, port, net, l4, peer, relayed)
