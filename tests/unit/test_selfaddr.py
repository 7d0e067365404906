"""exporter.selfaddr: which dialled addresses reach this exporter's own listener (issue 25, item 1)."""

from __future__ import annotations

import socket

import pytest

from exporter.selfaddr import reaches

PORT = 9464


@pytest.mark.parametrize("ip", ["127.0.0.1", "::ffff:127.0.0.1", "127.0.0.53", "0.0.0.0", "::", "::1"])
def test_a_wildcard_listener_is_reached_by_every_local_address(ip: str) -> None:
    for listener in [(None, PORT), ("0.0.0.0", PORT), ("::", PORT)]:
        assert reaches(ip, PORT, [listener]), (ip, listener)


def test_this_hosts_own_addresses_reach_a_wildcard_listener() -> None:
    for info in socket.getaddrinfo(socket.gethostname(), PORT, type=socket.SOCK_STREAM):
        assert reaches(str(info[4][0]), PORT, [(None, PORT)]), info


@pytest.mark.parametrize(
    ("ip", "port", "expected"),
    [
        ("127.0.0.1", PORT, True),
        ("::ffff:127.0.0.1", PORT, True),
        ("127.0.0.1", PORT + 1, False),  # another loopback service: allowed
        ("192.0.2.1", PORT, False),  # not an address of this host
        ("2001:db8::1", PORT, False),
    ],
)
def test_a_bound_listener(ip: str, port: int, expected: bool) -> None:
    assert reaches(ip, port, [("127.0.0.1", PORT)]) is expected
    assert reaches(ip, port, [(None, PORT)]) is expected


def test_a_listener_on_port_zero_is_never_matched() -> None:
    assert not reaches("127.0.0.1", 0, [("127.0.0.1", 0)])
