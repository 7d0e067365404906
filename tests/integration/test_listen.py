"""``--web.listen-address``: ``:PORT`` and ``[::]:PORT`` listen on IPv4 and IPv6; ``[::1]`` works."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from exporter.server import parse_listen, start_server


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1 is not configured)")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":9797", (None, 9797)),
        ("[::]:9797", (None, 9797)),
        ("0.0.0.0:9797", ("0.0.0.0", 9797)),
        ("127.0.0.1:9797", ("127.0.0.1", 9797)),
        ("[::1]:9797", ("::1", 9797)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen(address: str, expected: tuple[str | None, int]) -> None:
    assert parse_listen(address) == expected


@pytest.mark.parametrize("address", ["9797", "host:", "host:port", "[::1:9797", "127.0.0.1:99999", "host:-1"])
def test_parse_listen_refuses(address: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        parse_listen(address)


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    started: list[web.AppRunner] = []
    yield started
    for runner in started:
        await runner.cleanup()


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", _ok)
    return app


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status


def _bound(runner: web.AppRunner) -> list[tuple[int, str]]:
    out = []
    for site in runner.sites:
        for sock in site._server.sockets:  # type: ignore[union-attr]
            out.append((sock.family, sock.getsockname()[0]))
    return sorted(out)


@IPV6
@pytest.mark.parametrize("address", [":{port}", "[::]:{port}"])
async def test_every_interface_means_ipv4_and_ipv6(address: str, runners: list[web.AppRunner]) -> None:
    with socket.socket() as probe:  # a port free on IPv4; IPv6 is tried on the same number
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runner = await start_server(_app(), address.format(port=port))
    runners.append(runner)
    assert {family for family, _ in _bound(runner)} == {socket.AF_INET, socket.AF_INET6}
    assert await _status(f"http://127.0.0.1:{port}/healthz") == 200
    assert await _status(f"http://[::1]:{port}/healthz") == 200


@IPV6
async def test_ipv6_loopback_only(runners: list[web.AppRunner]) -> None:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    runner = await start_server(_app(), f"[::1]:{port}")
    runners.append(runner)
    assert _bound(runner) == [(socket.AF_INET6, "::1")]
    assert await _status(f"http://[::1]:{port}/healthz") == 200
