"""Issue 13, defect 7: endpoint slots are given back (HELLO deadline, idle limit), a 64 KiB command
is accepted as documented, and an oversized WebSocket message counts as reason="frame"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest

from exporter.app.runtime import build_hub
from exporter.introspector import Endpoint
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer
from tests.support.procs import until
from tests.test_endpoint import CMD, hello, make_introspector, recv, recv_raw, url
from tests.test_live_session import FAST


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_a_client_that_never_says_hello_gives_its_slot_back(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector(), max_clients=1, hello_timeout_s=0.3)
    await ep.start()
    try:
        silent = await http.ws_connect(url(ep))
        closed = await recv_raw(silent, timeout=5.0)  # fails loudly if the deadline never comes
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert silent.close_code == 1008
        await until(lambda: not ep.sessions, 5.0, "the slot given back")
        async with http.ws_connect(url(ep)) as ws:
            await hello(ws)
        assert ep.stats["sessions_closed_hello_timeout"] == 1
    finally:
        await ep.close()


async def test_an_idle_client_gives_its_slot_back(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector(), max_clients=1, idle_timeout_s=0.4)
    await ep.start()
    try:
        idle = await http.ws_connect(url(ep))
        await hello(idle)  # then nothing pushed and nothing asked
        closed = await recv_raw(idle, timeout=5.0)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and idle.close_code == 1008
        await until(lambda: not ep.sessions, 5.0, "the slot given back")
        assert ep.stats["sessions_closed_idle_timeout"] == 1
    finally:
        await ep.close()


async def test_a_command_of_exactly_64_kib_is_accepted(http: aiohttp.ClientSession) -> None:
    ep = Endpoint(make_introspector())
    await ep.start()
    try:
        base = pb.ClientCommand(id=1, command=CMD.HELLO).SerializeToString()
        # Pad with an unknown length-delimited field (number 15): tag 0x7a, a 3-byte varint length.
        filler = 65536 - len(base) - 1 - 3
        data = base + b"\x7a" + bytes([0x80 | (filler & 0x7F), 0x80 | ((filler >> 7) & 0x7F), filler >> 14])
        data += b"x" * filler
        assert len(data) == 65536
        async with http.ws_connect(url(ep)) as ws:
            await ws.send_bytes(data)
            reply = await recv(ws)
            assert reply.response.result == pb.CommandResponse.OK
            await ws.send_bytes(data + b"x")  # one byte more: over the cap
            closed = await recv_raw(ws)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 1009
    finally:
        await ep.close()


async def test_a_message_over_max_frame_size_is_a_frame_failure(server: IntrospectServer) -> None:
    server.add("", connections=40)  # a State of a few KiB
    hub = build_hub(live=True)
    session = Session(hub, "n", server.url(), replace(FAST, max_frame_bytes=1024))
    session.start()
    try:
        await until(lambda: session.stats.failures["frame"] >= 1, 15.0, "a frame failure")
        assert session.stats.failures["error"] == 0
        assert hub.nodes["n"].segment_errors["frame"] >= 1
    finally:
        await session.close()
    await asyncio.sleep(0)
