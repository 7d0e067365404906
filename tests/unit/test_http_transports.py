"""A closed HTTP connection is freed when it closes, not left for the cyclic collector (which the
exporter runs rarely while serving): CPython 3.11's selector transport keeps a bound method of
itself, a cycle that ``server.free_closed_transports`` breaks."""

from __future__ import annotations

import asyncio
import gc

from aiohttp.test_utils import TestServer

from exporter import server
from exporter.app.runtime import build_hub


def server_side_transports(port: int) -> int:
    """Transports still alive (reachable or only in cycles) whose local end is the server's port."""
    return sum(
        1
        for o in gc.get_objects()
        if type(o).__name__ == "_SelectorSocketTransport" and (o.get_extra_info("sockname") or ("", 0))[1] == port
    )


async def test_closed_connections_leave_no_transport_for_the_collector() -> None:
    server.free_closed_transports()
    gc.collect()
    gc.disable()  # nothing but reference counting frees what follows
    try:
        async with TestServer(server.build_app(build_hub())) as srv:
            port = srv.port
            assert port is not None
            for _ in range(20):  # one connection per request, as a client without keep-alive
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                body = await reader.read()
                assert body.startswith(b"HTTP/1.1 200")
                writer.close()
                await writer.wait_closed()
            for _ in range(5):  # the server sees each close on a later iteration
                await asyncio.sleep(0.01)
            assert server_side_transports(port) <= 1  # at most one still closing, never one per request
    finally:
        gc.enable()
