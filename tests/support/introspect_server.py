"""A scriptable introspection protocol server for end-to-end tests, written from docs/protocol.md alone.

It does its own framing (it must not share the client's code, so a shared mistake cannot hide) and
only borrows the generated protobuf module and the synthetic data generator. Each path
``/n/<key>/introspect`` (and ``/introspect``, key "") is one node; a test switches a node's
``mode`` to script misbehaviour: stall, close, corrupt, restart, flood, text frames, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from exporter.generator import SyntheticNode
from exporter.protocol import introspection_pb2 as pb


def fnv1a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def segment(msg: pb.ServerMessage | bytes, *, checksum: int | None = None, length: int | None = None) -> bytes:
    """u32 LE version 1 | u32 LE fnv1a(payload) | u32 LE len | payload (docs/protocol.md section 2)."""
    payload = msg if isinstance(msg, bytes) else msg.SerializeToString()
    cs = fnv1a(payload) if checksum is None else checksum
    n = len(payload) if length is None else length
    return struct.pack("<III", 1, cs, n) + payload


def response(cmd_id: int, ok: bool = True, error: str = "", config: pb.Configuration | None = None) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    msg.response.id = cmd_id
    msg.response.result = pb.CommandResponse.OK if ok else pb.CommandResponse.ERR
    msg.response.error = error
    if config is not None:
        msg.response.effective_config.CopyFrom(config)
    return msg


@dataclass
class FakeNode:
    """One node's data and scripted behaviour."""

    key: str
    seed: int = 1
    connections: int = 6
    min_interval_ms: int = 50
    text_frames: bool = False
    push_runtime_on_connect: bool = False
    push_state_on_connect: bool = False  # a server that does not wait for HELLO at all
    empty_version: bool = False
    autoping: bool = True  # False: never answer WebSocket pings (a peer that is gone but whose socket is not)
    refuse_hellos: int = 0
    err_commands: set[tuple[int, int]] = field(default_factory=set)  # (command, source) answered ERR
    mode: str = "normal"  # normal, stall, corrupt, close, flood, down
    flood_events: int = 2000
    peerstore: bool = False  # States carry the peerstore extension (Subsystems field 100)
    start_ms: int | None = None  # the synthetic clock's start (default: SyntheticNode's fixed one)
    # A scripted node: each push interval sends script(tick) (raw WebSocket messages, tick counting
    # from 0) instead of its synthetic State; see tests/support/hostile.py.
    script: Callable[[int], Sequence[bytes]] | None = None
    data: SyntheticNode = field(init=False)
    commands: list[pb.ClientCommand] = field(default_factory=list)
    connects: int = 0
    states_sent: int = 0
    live: set[Any] = field(default_factory=set)

    def __post_init__(self) -> None:
        start = {"start_ms": self.start_ms} if self.start_ms is not None else {}
        self.data = SyntheticNode(
            connections=self.connections,
            streams_per_conn=2,
            buckets=3,
            seed=self.seed,
            peerstore=self.peerstore,
            **start,
        )

    def restart(self, *, new_peer: bool) -> None:
        """A restarted node: traffic from zero, a new start_ts; a new identity when ``new_peer``."""
        now = self.data.now + 1000
        seed = self.seed + 1000 if new_peer else self.seed
        self.data = SyntheticNode(
            connections=self.connections,
            streams_per_conn=2,
            buckets=3,
            seed=seed,
            start_ms=now,
            peerstore=self.peerstore,
        )
        if new_peer:
            self.seed = seed


class IntrospectServer:
    """The aiohttp app serving every FakeNode; run it in a loop of its own with ``ServerThread``."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeNode] = {}
        self.app = web.Application()
        self.app.router.add_get("/introspect", self.handle)
        self.app.router.add_get("/n/{key}/introspect", self.handle)
        self.port = 0
        self.runner: web.AppRunner | None = None

    def add(self, key: str = "", **kw: Any) -> FakeNode:
        node = FakeNode(key=key, **kw)
        self.nodes[key] = node
        return node

    def url(self, key: str = "") -> str:
        path = f"/n/{key}/introspect" if key else "/introspect"
        return f"ws://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for node in self.nodes.values():
            for ws in list(node.live):
                with contextlib.suppress(Exception):
                    await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        node = self.nodes.get(request.match_info.get("key", ""))
        if node is None or node.mode == "down":
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse(autoping=node.autoping)
        await ws.prepare(request)
        node.connects += 1
        node.live.add(ws)
        conn = _Conn(node, ws)
        try:
            await conn.serve()
        finally:
            node.live.discard(ws)
            conn.stop()
        return ws


class _Conn:
    def __init__(self, node: FakeNode, ws: web.WebSocketResponse) -> None:
        self.node = node
        self.ws = ws
        self.hello = False
        self.events = False
        self.interval_ms = 1000
        self.pusher: asyncio.Task[None] | None = None

    async def send(self, *msgs: pb.ServerMessage, raw: bytes = b"") -> None:
        body = b"".join(segment(self._versioned(m)) for m in msgs) + raw
        if self.node.text_frames:
            await self.ws.send_str(body.decode("latin-1"))
        else:
            await self.ws.send_bytes(body)

    def _versioned(self, msg: pb.ServerMessage) -> pb.ServerMessage:
        if not self.node.empty_version:
            msg.version.version = 1
        return msg

    async def serve(self) -> None:
        node = self.node
        if node.push_runtime_on_connect:
            await self.send(node.data.runtime())
        if node.push_state_on_connect:
            node.data.step()
            await self.send(node.data.state())
        async for frame in self.ws:
            if frame.type != WSMsgType.BINARY:
                continue
            cmd = pb.ClientCommand.FromString(frame.data)
            node.commands.append(cmd)
            await self.command(cmd)

    async def command(self, cmd: pb.ClientCommand) -> None:
        C = pb.ClientCommand
        node = self.node
        if cmd.command == C.HELLO:
            if self.hello:
                await self.send(response(cmd.id, False, "HELLO already received"))
            elif node.refuse_hellos > 0:
                node.refuse_hellos -= 1
                await self.send(response(cmd.id, False, "not now"))
            else:
                self.hello = True
                want = cmd.config.state_snapshot_interval_ms or 1000
                self.interval_ms = max(node.min_interval_ms, want)
                cfg = pb.Configuration(
                    retention_period_ms=min(cmd.config.retention_period_ms or 120000, 120000),
                    state_snapshot_interval_ms=self.interval_ms,
                )
                await self.send(response(cmd.id, config=cfg))
            return
        if not self.hello:
            await self.send(response(cmd.id, False, "HELLO first"))
            return
        if (cmd.command, cmd.source) in node.err_commands:
            await self.send(response(cmd.id, False, "scripted refusal"))
            return
        if cmd.command == C.REQUEST:
            if cmd.source == C.RUNTIME:
                await self.send(node.data.runtime())
            elif cmd.source == C.STATE:
                await self.send(node.data.state())
            else:
                await self.send(response(cmd.id, False, "cannot request events"))
        elif cmd.command == C.PUSH_ENABLE:
            if cmd.source == C.EVENTS:
                self.events = True
            elif cmd.source == C.STATE and self.pusher is None:
                self.pusher = asyncio.create_task(self.push())
            await self.send(response(cmd.id))
        else:
            await self.send(response(cmd.id))

    async def push(self) -> None:
        node = self.node
        while not self.ws.closed:
            await asyncio.sleep(self.interval_ms / 1000.0)
            mode = node.mode
            if mode in ("stall", "down"):
                if mode == "down":
                    await self.ws.close()
                continue
            if mode == "close":
                # Abrupt: drop the TCP connection without a close frame.
                transport = self.ws._req.transport if self.ws._req is not None else None  # type: ignore[union-attr]
                if transport is not None:
                    transport.abort()
                return
            if node.script is not None:
                for raw in node.script(node.states_sent):
                    await self.send(raw=raw)
                node.states_sent += 1
                continue
            node.data.step()
            events = list(node.data.pending_events) if self.events else []
            node.data.pending_events.clear()
            if mode == "flood" and self.events:
                events += list(_flood(node, node.flood_events))
            node.states_sent += 1
            await self.send(*events, node.data.state())
            if mode == "corrupt":
                # A checksum mismatch in one frame, an oversized length with nothing behind it in the next.
                await self.send(raw=segment(node.data.state(), checksum=0xDEADBEEF))
                await self.send(raw=struct.pack("<III", 1, 0, 0x7FFFFFF0))

    def stop(self) -> None:
        if self.pusher is not None:
            self.pusher.cancel()


def _flood(node: FakeNode, n: int) -> Iterator[pb.ServerMessage]:
    for i in range(n):
        msg = pb.ServerMessage()
        msg.event.type.name = "PeerConnecting"
        msg.event.ts = node.data.now
        msg.event.content = f'{{"peerId": "flood{i}", "transport": "tcp", "role": "initiator"}}'
        yield msg


class ServerThread:
    """An IntrospectServer in a thread with its own event loop (for tests that run the exporter as a process)."""

    def __init__(self, server: IntrospectServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> IntrospectServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def call(self, fn: Any, *args: Any) -> Any:
        """Run a plain function on the server's loop (to change a node's mode safely)."""

        async def wrap() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
