"""Whether a socket address would reach this exporter's own HTTP listener (a leaf module).

``/probe`` must never dial the exporter itself: a self-probe chains into ``/probe`` again (a loop
the attacker steers) or scrapes ``/metrics`` through the exporter. A URL's spelling cannot decide
that (``[::ffff:127.0.0.1]``, ``0x7f000001``, ``2130706433``, ``017700000001``, this host's names
and DNS names that resolve later to something else all reach the same socket), so the decision is
made on the address actually dialled: the listener's port and, for a wildcard listener, any address
of this host. ``start_server`` records what it bound here; the session manager's connector calls
``refuse_self_dial`` for every socket it opens, redirects and reconnects included.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Iterable

# (host, port) of every socket this process's HTTP server listens on, as bound (port 0 resolved).
_bound: set[tuple[str, int]] = set()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def record_listening(addresses: Iterable[tuple[str, int]]) -> None:
    """Remember the exporter's bound listen sockets (``start_server``)."""
    _bound.update((host, port) for host, port in addresses)


def forget_listening(addresses: Iterable[tuple[str, int]]) -> None:
    """The server stopped listening on these."""
    for entry in addresses:
        _bound.discard(entry)


def listening() -> set[tuple[str, int]]:
    return set(_bound)


def normalise(host: str) -> IPAddress | None:
    """An IP address with IPv4-mapped IPv6 (``::ffff:a.b.c.d``) as the IPv4 address it is; else None."""
    with contextlib.suppress(ValueError):
        addr = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        return addr
    return None


def is_local(addr: IPAddress) -> bool:
    """True for an address of this host: loopback, unspecified (a connect to 0.0.0.0 lands here), or
    one a socket can be bound to (the kernel's own answer, whatever the interfaces are)."""
    if addr.is_loopback or addr.is_unspecified:
        return True
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(addr), 0))
    except OSError:
        return False
    return True


def reaches(ip: str, port: int, listeners: Iterable[tuple[str | None, int]]) -> bool:
    """Would a TCP connect to ``ip``:``port`` land on one of ``listeners`` ((host, port); a host of
    None, '', '0.0.0.0' or '::' listens on every address of this host)?"""
    addr = normalise(ip)
    if addr is None:
        return False
    for host, own_port in listeners:
        if own_port != port or port == 0:
            continue
        own = normalise(host or "::")
        if own is None:  # a listener given by name: whatever it resolves to now
            if any(addr == normalise(a) for a in _resolve_now(host or "", port)):
                return True
            continue
        if own.is_unspecified and is_local(addr):
            return True
        if addr == own or addr.is_unspecified:  # 0.0.0.0 and :: connect to this host
            return True
        if own.is_loopback and addr.is_loopback:  # erring on the safe side: 127.0.0.1 and ::1 alike
            return True
    return False


def _resolve_now(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def refuse_self_dial(addr_info: tuple[int, int, int, str, tuple[object, ...]]) -> socket.socket:
    """aiohttp's ``socket_factory``: the socket for one resolved address, or OSError when that
    address is this exporter's own listener (the URL's spelling and DNS no longer matter)."""
    family, type_, proto, _, sockaddr = addr_info
    ip, port = str(sockaddr[0]), int(sockaddr[1])  # type: ignore[call-overload]
    if reaches(ip, port, _bound):
        raise OSError(errno.EACCES, f"{ip} port {port} is this exporter's own listen address; refused")
    return socket.socket(family=family, type=type_, proto=proto)
