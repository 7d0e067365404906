"""Issue 25, item 4: ``session.max_frame_size`` means what it says. A WebSocket message of exactly
the limit is taken; one byte more is refused as "WebSocket message over LIMIT bytes" (aiohttp's
``max_msg_size`` refuses sizes equal to its value, so the client passes limit + 1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from exporter.app.runtime import build_hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.options import SessionOptions
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer, segment
from tests.support.live import FAST
from tests.support.procs import until

DEFAULT = SessionOptions().max_frame_bytes  # 16 MiB


PIECE = 4 * 1024 * 1024  # under the 8 MiB segment cap


def pieces(size: int) -> list[int]:
    return [PIECE] * (size // PIECE - 1) + [size - PIECE * (size // PIECE - 1)] if size > PIECE else [size]


def message_of(size: int) -> bytes:
    """Whole, valid segments (padded Runtimes) of exactly ``size`` bytes together: one WebSocket message."""
    data = b"".join(segment_of(n) for n in pieces(size))
    assert len(data) == size, (len(data), size)
    return data


def segment_of(size: int) -> bytes:
    """One whole, valid segment (a padded Runtime) of exactly ``size`` bytes."""
    msg = pb.ServerMessage()
    msg.version.version = 1
    for extra in range(8):  # a second field absorbs the steps of the first one's length prefix
        msg.runtime.version = "v" * extra
        msg.runtime.implementation = ""
        start = max(0, size - 12 - msg.ByteSize() - 16)
        for n in range(start, start + 24):
            msg.runtime.implementation = "x" * n
            if 12 + msg.ByteSize() >= size:
                break
        if 12 + msg.ByteSize() == size:
            break
    data = segment(msg)
    assert len(data) == size, (len(data), size)
    return data


def first_ticks(data: bytes, ticks: int = 3):  # type: ignore[no-untyped-def]
    def script(tick: int) -> Sequence[bytes]:
        return [data] if tick < ticks else []

    return script


@pytest.mark.parametrize("limit", [4096, DEFAULT])
async def test_a_message_of_exactly_the_limit_is_taken(server: IntrospectServer, limit: int) -> None:
    server.add("", script=first_ticks(message_of(limit)))
    runtimes = 3 * len(pieces(limit))
    hub = build_hub(live=True)
    session = Session(hub, "n", server.url(), replace(FAST, max_frame_bytes=limit))
    session.start()
    try:
        # every segment of the three messages is a Runtime: all of them taken
        await until(lambda: hub.nodes["n"].messages.get("runtime", 0) >= runtimes, 30.0, "three limit-sized messages")
        assert session.stats.failures["frame"] == 0, session.stats.last_error
        assert not hub.nodes["n"].segment_errors
    finally:
        await session.close()


@pytest.mark.parametrize("limit", [4096, DEFAULT])
async def test_one_byte_more_is_refused_with_the_limit_in_the_text(server: IntrospectServer, limit: int) -> None:
    server.add("", script=first_ticks(message_of(limit + 1)))
    hub = build_hub(live=True)
    session = Session(hub, "n", server.url(), replace(FAST, max_frame_bytes=limit))
    session.start()
    try:
        await until(lambda: session.stats.failures["frame"] >= 1, 30.0, "a frame failure")
        assert session.stats.last_error == f"WebSocket message over {limit} bytes"
        assert hub.nodes["n"].segment_errors["frame"] >= 1
    finally:
        await session.close()
