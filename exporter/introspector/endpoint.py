"""The Endpoint: an aiohttp WebSocket server speaking the introspection protocol (docs/protocol.md §3).

One ``_Session`` per client. The first command must be HELLO; REQUEST answers with the Runtime or
State itself; PUSH_ENABLE/PUSH_DISABLE switch the periodic State and the event stream per source;
PUSH_PAUSE queues both (pruned to the retention period) until PUSH_RESUME, which sends the OK,
then the queue, then carries on; UPDATE_CONFIG clamps the interval (>= 500 ms) and retention
(<= 120 s), re-arms the State timer and returns the effective config. Every server message is one
binary frame holding one segment with the 12-byte header (``encode_segment``).

What keeps the server safe from its clients: two pools of slots. A connection first waits in a small
pending pool (``max_pending``, 4) until it says HELLO; when a new one arrives and that pool is full,
the oldest pending connection is closed to make room, so silent connections can never lock out a
client that speaks. HELLO moves a client to the main pool (``max_clients``, 16); when that is full the
HELLO gets ERR "client limit reached" and the connection is closed. Then a
HELLO deadline and an idle limit per client (a slot held by a client that never says HELLO, never
reads or has nothing flowing either way is given back), a cap on command size (up to and including
``max_command_bytes``; aiohttp closes the session with 1009 above it), a bounded event queue per client (on
overflow events are dropped, counted, and a DISCARDING_EVENTS notice is sent), a bounded pause
queue, and a session that keeps sending garbage is closed after a number of consecutive errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError

from exporter.introspector.api import Introspector, now_ms
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.commands import response
from exporter.protocol.framing import encode_segment

log = logging.getLogger(__name__)

CMD = pb.ClientCommand
MIN_INTERVAL_MS = 500
MAX_RETENTION_MS = 120_000
DEFAULT_INTERVAL_MS = 1000
DEFAULT_RETENTION_MS = 120_000
PATH = "/introspect"


@dataclass
class EndpointOptions:
    host: str = "127.0.0.1"
    port: int = 0
    path: str = PATH
    max_clients: int = 16  # clients that said HELLO
    # Connections that have not said HELLO yet; when full, the oldest is closed for a newcomer.
    max_pending: int = 4
    event_queue: int = 256  # per client, as in the Go server
    pause_queue: int = 4096  # per client, on top of the retention pruning
    max_command_bytes: int = 64 * 1024
    max_bad_commands: int = 32  # consecutive, then the session is closed
    hello_timeout_s: float = 10.0  # no HELLO this long after the upgrade: closed (1008)
    # Idle: no command while nothing is pushed, or a send the client does not read, for this long;
    # also the WebSocket ping period is half of it (a client that does not answer pings is closed).
    idle_timeout_s: float = 60.0
    default_interval_ms: int = DEFAULT_INTERVAL_MS
    default_retention_ms: int = DEFAULT_RETENTION_MS
    clock: Callable[[], float] = time.monotonic  # seconds; tests pass a fake one to age the pause queue


def clamp_config(requested: pb.Configuration | None, current: tuple[int, int] | None = None) -> tuple[int, int]:
    """(interval_ms, retention_ms) after the protocol's limits; 0 in a request keeps the current value."""
    interval, retention = current or (DEFAULT_INTERVAL_MS, DEFAULT_RETENTION_MS)
    if requested is not None:
        if requested.state_snapshot_interval_ms:
            interval = max(MIN_INTERVAL_MS, int(requested.state_snapshot_interval_ms))
        if requested.retention_period_ms:
            retention = min(MAX_RETENTION_MS, int(requested.retention_period_ms))
    return interval, retention


def _server_message(**payload: object) -> pb.ServerMessage:
    msg = pb.ServerMessage(**payload)  # type: ignore[arg-type]  # one payload field, of the type its name says
    msg.version.version = 1
    return msg


class Endpoint:
    """Serves one Introspector on ``ws://HOST:PORT/introspect``; 127.0.0.1 and a free port by default."""

    def __init__(self, introspector: Introspector, options: EndpointOptions | None = None, **overrides: object) -> None:
        opts = options or EndpointOptions()
        for key, value in overrides.items():
            if not hasattr(opts, key):
                raise TypeError(f"unknown Endpoint option {key!r}")
            setattr(opts, key, value)
        self.introspector = introspector
        self.options = opts
        self.sessions: set[_Session] = set()  # every connection, pending or not
        self.pending: dict[_Session, None] = {}  # before HELLO, oldest first
        self.clients: set[_Session] = set()  # after HELLO (the main pool)
        self.stats: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._addrs: list[tuple[str, int]] = []

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.introspector.bind_loop()
        app = web.Application()
        app.router.add_get(self.options.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port)
        await site.start()
        self._addrs = []
        server = site._server  # the asyncio Server: the only place the bound port is known
        for sock in getattr(server, "sockets", None) or ():
            host, port = sock.getsockname()[:2]
            self._addrs.append((host, port))
        log.info("introspection endpoint listening on %s", ", ".join(self.listen_addrs()))

    async def close(self) -> None:
        for session in list(self.sessions):
            await session.close(1001, b"server shutting down")
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def listen_addrs(self) -> list[str]:
        out = []
        for host, port in self._addrs:
            shown = f"[{host}]" if ":" in host else host
            out.append(f"ws://{shown}:{port}{self.options.path}")
        return out

    @property
    def port(self) -> int:
        return self._addrs[0][1] if self._addrs else 0

    # -- one client -------------------------------------------------------------------------
    def _make_room(self) -> None:
        """Close the oldest connections still waiting for HELLO until a new one fits the pending pool."""
        while len(self.pending) >= max(1, self.options.max_pending):
            oldest = next(iter(self.pending))
            del self.pending[oldest]
            self.stats["clients_evicted"] += 1
            if self.stats["clients_evicted"] == 1:
                log.warning(
                    "introspection endpoint: %d connections waiting for HELLO; closing the oldest for each new one",
                    self.options.max_pending,
                )
            oldest.evict()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            # aiohttp refuses a message of exactly max_msg_size bytes; "up to 64 KiB" includes 65,536.
            max_msg_size=self.options.max_command_bytes + 1,
            autoping=True,
            compress=False,
            heartbeat=self.options.idle_timeout_s / 2 if self.options.idle_timeout_s > 0 else None,
        )
        await ws.prepare(request)
        session = _Session(self, ws, request.transport)
        self._make_room()  # no await from here to the insertion: the pool never exceeds its bound
        self.sessions.add(session)
        self.pending[session] = None
        self.stats["clients_total"] += 1
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self.pending.pop(session, None)
            self.clients.discard(session)
            await session.stop_tasks()
        return ws


class _Session:
    def __init__(self, endpoint: Endpoint, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self.endpoint = endpoint
        self.ws = ws
        self.transport = transport
        opts = endpoint.options
        self.hello = False
        self.interval_ms, self.retention_ms = opts.default_interval_ms, opts.default_retention_ms
        self.push_state = False
        self.push_events = False
        self.paused = False
        self.pause_queue: deque[tuple[float, bytes]] = deque()
        self.events: deque[bytes] = deque()
        self.notice_owed = False
        self.wakeup = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.bad_in_a_row = 0
        self.state_task: asyncio.Task[None] | None = None
        self.sender_task: asyncio.Task[None] | None = None
        self.unsubscribe = endpoint.introspector.subscribe(self._on_event)
        self.dropped = 0
        # Start of the period the next State covers: HELLO, PUSH_ENABLE STATE, then each State sent.
        self.covered_from_ms = 0
        self.hello_deadline = time.monotonic() + opts.hello_timeout_s
        self.evicted = False
        self.refused = False
        self.closer: asyncio.Task[None] | None = None

    def evict(self) -> None:
        """Closed to make room in the pending pool (it never said HELLO): a close frame, and the
        connection dropped if that is not answered within a second (its read loop then ends)."""
        self.evicted = True
        self.closer = asyncio.create_task(self._evict_close())

    async def _evict_close(self) -> None:
        await self.close(1008, b"too many connections waiting for HELLO")
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    @property
    def stats(self) -> Counter[str]:
        return self.endpoint.stats

    def _read_timeout(self) -> float | None:
        """How long the next command may take: the HELLO deadline, then the idle limit while
        nothing is pushed (a streaming client sends nothing, and that is fine)."""
        opts = self.endpoint.options
        if not self.hello:
            return max(0.0, self.hello_deadline - time.monotonic()) if opts.hello_timeout_s > 0 else None
        if self.push_state or self.push_events or opts.idle_timeout_s <= 0:
            return None
        return opts.idle_timeout_s

    async def run(self) -> None:
        self.sender_task = asyncio.create_task(self._sender())
        while not self.ws.closed and not self.refused and not self.evicted:
            timeout = self._read_timeout()
            try:
                # The whole wait is bounded: aiohttp's own receive timeout restarts at each pong.
                frame = await asyncio.wait_for(self.ws.receive(), timeout)
            except asyncio.TimeoutError:
                reason = "hello_timeout" if not self.hello else "idle_timeout"
                self.stats[f"sessions_closed_{reason}"] += 1
                await self.close(1008, b"no HELLO in time" if not self.hello else b"idle")
                break
            if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if frame.type == WSMsgType.BINARY:
                await self._command(frame.data)
            elif frame.type == WSMsgType.TEXT:
                await self._bad(0, "commands are binary frames holding a ClientCommand")
            elif frame.type == WSMsgType.ERROR:
                self.stats["session_errors"] += 1
                break
            if self.bad_in_a_row >= self.endpoint.options.max_bad_commands:
                self.stats["sessions_closed_for_errors"] += 1
                await self.close(1008, b"too many bad commands")
                break

    async def stop_tasks(self) -> None:
        self.unsubscribe()
        if self.closer is not None:  # an eviction's close: bounded (one second, then the socket is dropped)
            with contextlib.suppress(Exception):
                await self.closer
        for task in (self.state_task, self.sender_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def close(self, code: int, message: bytes) -> None:
        """Close the session; a client that does not answer the close frame is given one second."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=message), 1.0)

    # -- output -----------------------------------------------------------------------------
    async def _send(self, data: bytes) -> None:
        async with self.send_lock:
            if self.ws.closed:
                return
            limit = self.endpoint.options.idle_timeout_s
            try:
                await asyncio.wait_for(self.ws.send_bytes(data), limit if limit > 0 else None)
                self.stats["messages_sent"] += 1
            except asyncio.TimeoutError:  # the client does not read: give its slot back
                self.stats["sessions_closed_idle_timeout"] += 1
                await self.close(1008, b"not reading")
            except (ConnectionError, RuntimeError):
                self.stats["send_failures"] += 1

    async def _reply(self, cmd_id: int, *, error: str = "", config: bool = False) -> None:
        cfg = None
        if config:
            cfg = pb.Configuration(retention_period_ms=self.retention_ms, state_snapshot_interval_ms=self.interval_ms)
        await self._send(encode_segment(response(cmd_id, ok=not error, error=error, config=cfg)))

    async def _bad(self, cmd_id: int, error: str) -> None:
        self.bad_in_a_row += 1
        self.stats["bad_commands"] += 1
        if self.stats["bad_commands"] == 1:
            log.warning("introspection endpoint: bad command from a client: %s", error)
        await self._reply(cmd_id, error=error)

    def _queue_paused(self, data: bytes) -> None:
        now = self.endpoint.options.clock()
        self.pause_queue.append((now, data))
        horizon = now - self.retention_ms / 1000.0
        while self.pause_queue and (
            self.pause_queue[0][0] < horizon or len(self.pause_queue) > self.endpoint.options.pause_queue
        ):
            self.pause_queue.popleft()
            self.stats["paused_pruned"] += 1

    def _on_event(self, msg: pb.ServerMessage) -> None:
        """Subscriber callback (on the loop): queue the event for this client, never block."""
        if not self.push_events:
            return
        data = encode_segment(msg)
        if self.paused:
            self._queue_paused(data)
            return
        if len(self.events) >= self.endpoint.options.event_queue:
            self.dropped += 1
            self.stats["events_dropped"] += 1
            self.notice_owed = True
        else:
            self.events.append(data)
        self.wakeup.set()

    async def _sender(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            if self.notice_owed:
                self.notice_owed = False
                self.stats["notices_sent"] += 1
                await self._send(
                    encode_segment(_server_message(notice=pb.ServerNotice(kind=pb.ServerNotice.DISCARDING_EVENTS)))
                )
            while self.events:
                await self._send(self.events.popleft())

    async def _next_state(self) -> pb.State:
        """A State whose snapshot_duration_ms is the time since this client's previous one."""
        state = await self.endpoint.introspector.fetch_full_state(covers_since_ms=self.covered_from_ms)
        self.covered_from_ms = state.instant_ts
        return state

    async def _state_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_ms / 1000.0)
            try:
                state = await self._next_state()
            except Exception:  # provider faults are contained inside; this would be a bug: skip a beat
                self.stats["snapshot_failures"] += 1
                log.exception("introspection endpoint: snapshot failed")
                continue
            data = encode_segment(_server_message(state=state))
            if self.paused:
                self._queue_paused(data)
            else:
                await self._send(data)

    def _arm_state_timer(self) -> None:
        if self.state_task is not None:
            self.state_task.cancel()
            self.state_task = None
        if self.push_state:
            self.state_task = asyncio.create_task(self._state_loop())

    # -- input ------------------------------------------------------------------------------
    async def _command(self, data: bytes) -> None:
        cmd = pb.ClientCommand()
        try:
            cmd.ParseFromString(data)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            await self._bad(0, f"malformed command: {exc}")
            return
        kind, source, cid = cmd.command, cmd.source, cmd.id
        if kind == CMD.HELLO:
            if self.hello:
                await self._bad(cid, "HELLO already received")
                return
            ep = self.endpoint
            if self.evicted:
                return  # closing already
            ep.pending.pop(self, None)
            if len(ep.clients) >= ep.options.max_clients:
                ep.stats["clients_rejected"] += 1
                if ep.stats["clients_rejected"] == 1:
                    log.warning(
                        "introspection endpoint: client limit %d reached; refusing more", ep.options.max_clients
                    )
                self.refused = True
                await self._reply(cid, error="client limit reached")
                await self.close(1008, b"client limit reached")
                return
            ep.clients.add(self)
            self.hello = True
            self.covered_from_ms = now_ms()
            self.interval_ms, self.retention_ms = clamp_config(
                cmd.config if cmd.HasField("config") else None, (self.interval_ms, self.retention_ms)
            )
            self.bad_in_a_row = 0
            await self._reply(cid, config=True)
            return
        if not self.hello:
            await self._bad(cid, "the first command must be HELLO")
            return
        if source not in (CMD.STATE, CMD.RUNTIME, CMD.EVENTS):
            await self._bad(cid, f"unknown source {source}")
            return
        if kind == CMD.REQUEST:
            if source == CMD.EVENTS:
                await self._bad(cid, "REQUEST EVENTS is not supported; use PUSH_ENABLE EVENTS")
                return
            intro = self.endpoint.introspector
            if source == CMD.STATE:
                msg = _server_message(state=await self._next_state())
            else:
                msg = _server_message(runtime=await intro.fetch_runtime())
            self.bad_in_a_row = 0
            await self._send(encode_segment(msg))
        elif kind in (CMD.PUSH_ENABLE, CMD.PUSH_DISABLE):
            if source == CMD.RUNTIME:
                await self._bad(cid, "the Runtime cannot be pushed; REQUEST it")
                return
            on = kind == CMD.PUSH_ENABLE
            if source == CMD.STATE:
                changed = self.push_state != on
                self.push_state = on
                if changed:
                    if on:  # the first pushed State covers the interval from here
                        self.covered_from_ms = now_ms()
                    self._arm_state_timer()
            else:
                self.push_events = on
                if not on:
                    self.events.clear()
            if not self.push_state and not self.push_events:
                self.pause_queue.clear()
            self.bad_in_a_row = 0
            await self._reply(cid)
        elif kind == CMD.PUSH_PAUSE:
            self.paused = True
            self.bad_in_a_row = 0
            await self._reply(cid)
        elif kind == CMD.PUSH_RESUME:
            self.bad_in_a_row = 0
            await self._reply(cid)
            await self._resume()
        elif kind == CMD.UPDATE_CONFIG:
            self.interval_ms, self.retention_ms = clamp_config(
                cmd.config if cmd.HasField("config") else None, (self.interval_ms, self.retention_ms)
            )
            self._arm_state_timer()
            self.bad_in_a_row = 0
            await self._reply(cid, config=True)
        else:
            await self._bad(cid, f"unknown command {kind}")

    async def _resume(self) -> None:
        """Send what was queued while paused (still within retention), then stream again."""
        horizon = self.endpoint.options.clock() - self.retention_ms / 1000.0
        while self.pause_queue:
            queued_at, data = self.pause_queue.popleft()
            if queued_at >= horizon:
                await self._send(data)
        self.paused = False  # no await since the queue was seen empty: nothing slips in between
