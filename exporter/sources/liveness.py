"""Is the node talking? Evidence taken at the socket, not at the pipeline (issue 20: liveness is the node's).

A busy event loop runs its timers late and reads its sockets late, together: a read timeout or a pong
timer can fire in the same loop iteration that would have read the node's bytes. These helpers let a
session tell a silent node from an exporter that has not yet read what the node sent.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any


def stamp_arrivals(ws: Any, arrived: Callable[[], None]) -> bool:
    """Call ``arrived`` each time the transport hands the WebSocket parser bytes, part of a frame
    included (a 16 MiB State arriving slowly is a node talking). aiohttp has this hook for its own
    heartbeat; when it is missing (another aiohttp), False, and whole frames and the socket's
    readability are the evidence left."""
    protocol = getattr(getattr(ws, "_conn", None), "protocol", None)
    if protocol is None or not hasattr(protocol, "_data_received_cb"):
        return False
    previous = protocol._data_received_cb

    def hook() -> None:
        arrived()
        if previous is not None:
            previous()

    protocol._data_received_cb = hook
    return True


def input_waiting(ws: Any) -> bool:
    """Whether the node sent something not read yet: whole messages in aiohttp's queue, or bytes in
    the kernel's socket buffer. Either way the node is not silent."""
    reader = getattr(ws, "_reader", None)
    if reader is not None and getattr(reader, "_buffer", None):
        return True
    conn = getattr(ws, "_conn", None)
    transport = getattr(conn, "transport", None) if conn is not None else None
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)
