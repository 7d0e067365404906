"""Just enough multiaddr parsing to fill OpenTelemetry network attributes from a text multiaddr.

Spans want a host, a port, the IP version and the layer-4 transport; libp2p gives text such as
``/ip4/1.2.3.4/udp/4001/quic-v1/p2p/12D3KooW...``. Anything that does not parse (the observer mock
puts bare peer ids in ``EndpointPair``) yields an empty result rather than an error.
"""

from __future__ import annotations

from dataclasses import dataclass

_HOSTS = {"ip4": "ipv4", "ip6": "ipv6", "dns": "", "dns4": "ipv4", "dns6": "ipv6", "dnsaddr": ""}
# Components that take one value; anything else is a bare protocol name.
_WITH_VALUE = {*_HOSTS, "tcp", "udp", "p2p", "ipfs", "ip6zone", "unix", "sni", "certhash", "dccp", "sctp"}


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
    parts = [p for p in addr.split("/") if p]
    host = net = l4 = peer = ""
    port: int | None = None
    relayed = False
    quic = False
    i = 0
    while i < len(parts):
        name = parts[i]
        value = parts[i + 1] if name in _WITH_VALUE and i + 1 < len(parts) else None
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
            host, l4 = "/" + "/".join(parts[i + 1 :]), "unix"
            break
        elif name in ("p2p", "ipfs") and value is not None:
            peer = value
        i += 2 if value is not None else 1
    if quic and l4 == "udp":
        l4 = "quic"
    return Addr(host, port, net, l4, peer, relayed)
