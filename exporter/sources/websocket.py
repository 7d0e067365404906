"""Live sources: the introspection WebSocket client (protocol.md sections 2 and 3).

A ``Session`` keeps one node's stream flowing into the hub for as long as it runs: connect, HELLO
with the wanted configuration, then REQUEST RUNTIME, PUSH_ENABLE EVENTS and PUSH_ENABLE STATE; on
any failure it backs off (exponential, jittered, capped) and tries again. A ``SessionManager`` runs
many sessions over one aiohttp client and starts sessions on demand for ``/probe``.

Between the socket and the hub sits a bounded buffer. A flood of events is dropped (and counted)
rather than queued without limit, and States are preferred over events, so a slow pipeline shows
current snapshots instead of stale ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from exporter.logs import RateLimitedLog
from exporter.node import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.commands import command
from exporter.protocol.framing import DEFAULT_MAX_SEGMENT, SegmentError, decode_segments

log = logging.getLogger(__name__)
# A target that stays down is logged when it goes down and then summarised every 5 minutes, not once
# per attempt (a 17-minute demo with nodes stopped on purpose logged 214 reconnect warnings).
RECONNECT_LOG_INTERVAL_S = 300.0

DEFAULT_INTERVAL_MS = 1000
DEFAULT_RETENTION_MS = 120_000
STATES = ("idle", "connecting", "handshaking", "streaming", "backoff", "closed")


class Recorder(Protocol):
    """Anything that takes the messages a session ingests (see exporter.sources.recording)."""

    def write(self, msg: pb.ServerMessage) -> None: ...

    def close(self) -> None: ...


@dataclass
class SessionOptions:
    """How one session behaves; every field has a sensible default for a real node."""

    interval_ms: int = DEFAULT_INTERVAL_MS
    retention_ms: int = DEFAULT_RETENTION_MS
    # Staleness: no State for this many effective intervals and the node's data stops being exported.
    stale_intervals: float = 3.0
    # Reconnect backoff: initial, cap, multiplier; jitter is a +-share of each delay.
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.2
    # A session that delivered States for this long resets the backoff.
    healthy_after_s: float = 10.0
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    # WebSocket ping period; the peer is dead when a pong is late (aiohttp closes the socket).
    heartbeat_s: float | None = 10.0
    # Nothing at all received for this long while streaming: the peer is stalled; None = derive.
    read_timeout_s: float | None = None
    max_frame_bytes: int = 16 * 1024 * 1024
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT
    queue_size: int = 4096
    queue_bytes: int = 64 * 1024 * 1024  # the buffer's bound in (wire) bytes, besides its length

    def effective_read_timeout(self, interval_ms: int) -> float:
        if self.read_timeout_s is not None:
            return self.read_timeout_s
        return max(5.0, 5 * interval_ms / 1000.0)


@dataclass
class SessionStats:
    """What a session tells the exporter about itself; read at scrape time by the session subsystem."""

    url: str = ""
    state: str = "idle"
    connects: int = 0  # connection attempts
    reconnects: int = 0  # attempts after the first
    established: int = 0  # sessions that got a HELLO OK
    failures: Counter[str] = field(default_factory=Counter)  # why sessions ended
    dropped: Counter[str] = field(default_factory=Counter)  # messages dropped by the bounded buffer
    frames: Counter[str] = field(default_factory=Counter)  # binary / text frames received
    effective_interval_ms: int = 0
    effective_retention_ms: int = 0
    connected_since: float | None = None
    last_error: str = ""
    queue_depth: int = 0
    queue_high_water: int = 0


def _reason(error: str) -> str:
    """A server's error text for one log line: quoted (no line breaks) and at most 200 characters."""
    return repr(error[:200]) if error else "no reason given"


class HelloRefused(Exception):
    """The server answered HELLO with ERR."""


class SessionEnded(Exception):
    """The session cannot go on; the reason is the counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Backoff:
    """Exponential backoff with jitter and a cap; ``reset()`` after a healthy session."""

    def __init__(
        self, initial: float, cap: float, factor: float = 2.0, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        spread = base * self.jitter
        return max(0.0, min(self.cap, base + self.rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.attempt = 0


class BoundedBuffer:
    """A FIFO of server messages with a hard size, in messages and in bytes. When full, an event is
    dropped; anything else (a State, a Runtime, a response) pushes out the oldest entries until it
    fits. Every drop is counted by kind. The byte bound matters because one message may be 8 MiB."""

    def __init__(self, size: int, dropped: Counter[str], max_bytes: int = 0) -> None:
        self.size = max(1, size)
        self.max_bytes = max_bytes  # 0: no byte bound
        self.items: deque[tuple[pb.ServerMessage, int]] = deque()
        self.bytes = 0
        self.dropped = dropped
        self.ready = asyncio.Event()

    def _full(self, nbytes: int) -> bool:
        if len(self.items) >= self.size:
            return True
        return bool(self.max_bytes) and bool(self.items) and self.bytes + nbytes > self.max_bytes

    def put(self, msg: pb.ServerMessage, nbytes: int = 0) -> None:
        if self._full(nbytes):
            kind = msg.WhichOneof("payload") or "empty"
            if kind == "event":
                self.dropped[kind] += 1
                return
            while self._full(nbytes):
                old, old_bytes = self.items.popleft()
                self.bytes -= old_bytes
                self.dropped[old.WhichOneof("payload") or "empty"] += 1
        self.items.append((msg, nbytes))
        self.bytes += nbytes
        self.ready.set()

    def take(self) -> list[pb.ServerMessage]:
        out = [msg for msg, _ in self.items]
        self.items.clear()
        self.bytes = 0
        self.ready.clear()
        return out

    def __len__(self) -> int:
        return len(self.items)


def default_name(url: str) -> str:
    """A readable node name for a URL: ``host:port``, plus the path when it is not the usual one."""
    parts = urlsplit(url)
    name = parts.netloc or url
    if parts.path not in ("", "/", "/introspect"):
        name += parts.path
    return name


class Session:
    """One node, one WebSocket at a time, kept alive until ``close()``.

    Everything decoded is handed to ``hub.ingest`` under ``name``; damaged segments and unusable
    frames go to ``hub.errors``. Command ids count up from 1 across reconnects, as the observer UI's do.
    """

    def __init__(
        self,
        hub: Hub,
        name: str,
        url: str,
        options: SessionOptions | None = None,
        *,
        labels: dict[str, str] | None = None,
        client: aiohttp.ClientSession | None = None,
        recorder: Recorder | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.hub = hub
        self.name = name
        self.url = url
        self.opts = options or SessionOptions()
        self.node = hub.node(name, labels)
        # Down until a HELLO is accepted, and stale by the interval asked for until one is agreed:
        # data a server pushes without a session must not read as a live, never-stale node.
        self.node.up = False
        self.node.stale_after_s = self.opts.stale_intervals * self.opts.interval_ms / 1000.0
        self.stats = SessionStats(url=url)
        self.reconnect_log = RateLimitedLog(log, interval=RECONNECT_LOG_INTERVAL_S)
        self.recorder = recorder
        self._client = client
        self._own_client = client is None
        self._next_id = 0
        self._pending: dict[int, str] = {}
        self._closing = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self.backoff = Backoff(
            self.opts.backoff_initial_s,
            self.opts.backoff_max_s,
            self.opts.backoff_factor,
            self.opts.backoff_jitter,
            rng,
        )
        self.buffer = BoundedBuffer(self.opts.queue_size, self.stats.dropped, self.opts.queue_bytes)
        self._frame_share = 0  # wire bytes per message of the frame being handled
        self.last_used = time.monotonic()  # for /probe idle reaping
        self.first_state = asyncio.Event()
        from exporter.subsystems.session import attach

        attach(hub, self.node, self.stats)

    # -- public API -------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Run in the background; ``close()`` stops it."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"session {self.name}")
        return self._task

    async def run(self) -> None:
        """Connect, stream, and on any failure back off and reconnect, until ``close()``."""
        consumer = asyncio.create_task(self._consume(), name=f"ingest {self.name}")
        try:
            while not self._closing:
                started = time.monotonic()
                states_before = self.node.messages.get("state", 0)
                established_before = self.stats.established
                healthy = False
                try:
                    healthy = await self._one_session()
                    reason, detail = "closed", "server closed the connection"
                except SessionEnded as exc:
                    reason, detail = exc.reason, str(exc)
                except HelloRefused as exc:
                    reason, detail = "hello_refused", f"HELLO refused: {exc}"
                except asyncio.TimeoutError:
                    reason, detail = "timeout", "timed out"
                except (aiohttp.ClientError, OSError) as exc:
                    reason, detail = "connect", f"{type(exc).__name__}: {exc}"
                except Exception as exc:  # a bug or a surprise must not end the session for good
                    log.exception("node %s: unexpected error in the session", self.name)
                    reason, detail = "error", f"{type(exc).__name__}: {exc}"
                finally:
                    ws, self._ws = self._ws, None
                    if ws is not None and not ws.closed:
                        with contextlib.suppress(Exception):
                            await ws.close()
                if self._closing:
                    break
                self.stats.failures[reason] += 1
                self.stats.last_error = detail
                self.stats.connected_since = None
                # Healthy: the session was accepted and delivered States, however it ended (a stall
                # or a missed pong after hours of streaming counts too, not only a clean close).
                delivered = self.stats.established > established_before and (
                    self.node.messages.get("state", 0) > states_before or bool(self.buffer)
                )
                if (healthy or delivered) and time.monotonic() - started >= self.opts.healthy_after_s:
                    self.backoff.reset()
                delay = self.backoff.next()
                self.reconnect_log.warning(
                    self.name, "node %s (%s): %s; reconnecting in %.1fs", self.name, self.url, detail, delay
                )
                self.stats.state = "backoff"
                await asyncio.sleep(delay)
        finally:
            self.stats.state = "closed"
            self.reconnect_log.flush()  # suppressed warnings are reported when the session ends
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            self._drain()
            if self._own_client and self._client is not None:
                await self._client.close()
                self._client = None

    async def close(self) -> None:
        """Stop for good: close the socket, stop the task, flush the buffer and the recorder."""
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.stats.state = "closed"
        self.node.up = False  # nobody feeds this node any more
        if self._own_client and self._client is not None:
            await self._client.close()
            self._client = None
        if self.recorder is not None:
            self.recorder.close()

    # -- one connection -----------------------------------------------------------------------
    def _id(self, what: str) -> int:
        self._next_id += 1
        self._pending[self._next_id] = what
        if len(self._pending) > 64:  # answers that never came; forget the oldest
            self._pending.pop(next(iter(self._pending)))
        return self._next_id

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, what: str, cmd: int, source: int, **config: int) -> int:
        cmd_id = self._id(what)
        await ws.send_bytes(command(cmd_id, cmd, source, **config))
        return cmd_id

    async def _one_session(self) -> bool:
        """One connection from connect to loss; True when it got as far as streaming States."""
        if self._client is None:
            self._client = aiohttp.ClientSession()
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self.stats.state = "connecting"
        ws = await asyncio.wait_for(self._connect(), self.opts.connect_timeout_s)
        self._ws = ws
        self.stats.state = "handshaking"
        opts = self.opts
        hello = await self._send(
            ws,
            "HELLO",
            pb.ClientCommand.HELLO,
            pb.ClientCommand.STATE,
            interval_ms=opts.interval_ms,
            retention_ms=opts.retention_ms,
        )
        deadline = time.monotonic() + opts.handshake_timeout_s
        config: pb.Configuration | None = None
        while config is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionEnded("timeout", f"no answer to HELLO within {opts.handshake_timeout_s}s")
            for msg in await self._receive(ws, remaining):
                if msg.WhichOneof("payload") == "response" and msg.response.id in (hello, 0):
                    resp = msg.response
                    self._accept(msg)
                    if resp.result == pb.CommandResponse.ERR:
                        raise HelloRefused(_reason(resp.error))
                    config = resp.effective_config if resp.HasField("effective_config") else pb.Configuration()
                else:
                    self._accept(msg)
        interval = config.state_snapshot_interval_ms or opts.interval_ms
        self.stats.effective_interval_ms = interval
        self.stats.effective_retention_ms = config.retention_period_ms or opts.retention_ms
        self.node.stale_after_s = opts.stale_intervals * interval / 1000.0
        self.node.up = True
        self.stats.established += 1
        self.stats.connected_since = time.time()
        await self._send(ws, "REQUEST RUNTIME", pb.ClientCommand.REQUEST, pb.ClientCommand.RUNTIME)
        await self._send(ws, "PUSH_ENABLE EVENTS", pb.ClientCommand.PUSH_ENABLE, pb.ClientCommand.EVENTS)
        await self._send(ws, "PUSH_ENABLE STATE", pb.ClientCommand.PUSH_ENABLE, pb.ClientCommand.STATE)
        self.stats.state = "streaming"
        self.reconnect_log.forget(self.name)  # what was suppressed while it was down is reported now
        log.info("node %s (%s): session up, interval %d ms", self.name, self.url, interval)
        read_timeout = opts.effective_read_timeout(interval)
        states_before = self.node.messages.get("state", 0)
        try:
            while True:
                try:
                    msgs = await self._receive(ws, read_timeout)
                except asyncio.TimeoutError:
                    raise SessionEnded("stalled", f"nothing received for {read_timeout:.1f}s") from None
                for msg in msgs:
                    self._accept(msg)
        except SessionEnded as exc:
            if exc.reason == "closed":
                return self.node.messages.get("state", 0) > states_before or bool(self.buffer)
            raise

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        assert self._client is not None
        return await self._client.ws_connect(
            self.url,
            heartbeat=self.opts.heartbeat_s,
            max_msg_size=self.opts.max_frame_bytes,
            autoping=True,
        )

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, timeout: float) -> list[pb.ServerMessage]:
        """The messages of the next data frame (possibly none); SessionEnded when the socket is gone."""
        while True:
            frame = await ws.receive(timeout=timeout)
            if frame.type == aiohttp.WSMsgType.BINARY:
                self.stats.frames["binary"] += 1
                return self._decode(frame.data)
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.stats.frames["text"] += 1
                try:
                    data = frame.data.encode("latin-1")
                except UnicodeEncodeError:
                    self.hub.errors(self.name, [SegmentError(0, "frame", "text frame with characters above U+00FF", 0)])
                    return []
                return self._decode(data)
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise SessionEnded("closed", f"server closed the connection ({ws.close_code})")
            if frame.type == aiohttp.WSMsgType.ERROR:
                exc = ws.exception()
                if isinstance(exc, aiohttp.WebSocketError) and "too big" in str(exc).lower():
                    self.hub.errors(
                        self.name,
                        [SegmentError(0, "frame", f"WebSocket message over {self.opts.max_frame_bytes} bytes", 0)],
                    )
                    raise SessionEnded("frame", str(exc))
                if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
                    raise SessionEnded("heartbeat", "no pong from the peer")
                raise SessionEnded("error", f"WebSocket error: {exc}")
            # PING/PONG are answered by aiohttp; anything else is ignored.

    def _decode(self, data: bytes) -> list[pb.ServerMessage]:
        result = decode_segments(data, versioned=True, max_segment=self.opts.max_segment_bytes)
        self._frame_share = len(data) // max(1, len(result.messages))
        if result.errors:
            self.hub.errors(self.name, result.errors)
        return result.messages

    def _accept(self, msg: pb.ServerMessage) -> None:
        """Queue one message for the hub, and log an ERR answer to one of our commands."""
        if msg.WhichOneof("payload") == "response":
            what = self._pending.pop(msg.response.id, f"command {msg.response.id}")
            if msg.response.result == pb.CommandResponse.ERR:
                log.warning("node %s: %s refused: %s", self.name, what, _reason(msg.response.error))
        self.buffer.put(msg, self._frame_share)
        self.stats.queue_depth = len(self.buffer)
        self.stats.queue_high_water = max(self.stats.queue_high_water, self.stats.queue_depth)

    # -- hub side -----------------------------------------------------------------------------
    async def _consume(self) -> None:
        """Move buffered messages into the hub, yielding to the loop between batches."""
        while True:
            await self.buffer.ready.wait()
            batch = self.buffer.take()
            self.stats.queue_depth = 0
            for i, msg in enumerate(batch):
                self._ingest(msg)
                if i % 64 == 63:
                    await asyncio.sleep(0)

    def _drain(self) -> None:
        for msg in self.buffer.take():
            self._ingest(msg)

    def _ingest(self, msg: pb.ServerMessage) -> None:
        try:
            update = self.hub.ingest(self.name, msg)
        except Exception:  # a pipeline bug must not kill the session
            log.exception("node %s: ingest failed", self.name)
            return
        if self.recorder is not None:
            try:
                self.recorder.write(msg)
            except OSError as exc:
                log.error("node %s: recording failed, stopping it: %s", self.name, exc)
                self.recorder = None
        if update is not None and not self.first_state.is_set():
            self.first_state.set()


@dataclass
class Target:
    """One node to watch: where, under which name, how often, with which extra labels."""

    url: str
    name: str = ""
    interval_ms: int = DEFAULT_INTERVAL_MS
    labels: dict[str, str] = field(default_factory=dict)
    retention_ms: int = DEFAULT_RETENTION_MS
    stale_intervals: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = default_name(self.url)


class SessionManager:
    """Many sessions over one aiohttp client: the configured targets, plus those ``/probe`` asks for.

    Probe-started sessions nobody has probed for ``probe_idle_s`` are closed and their node removed.
    """

    def __init__(
        self,
        hub: Hub,
        options: SessionOptions | None = None,
        *,
        recorder_factory: Callable[[str], Recorder] | None = None,
        probe_idle_s: float = 300.0,
        max_probe_sessions: int = 1000,
    ) -> None:
        self.hub = hub
        self.options = options or SessionOptions()
        self.recorder_factory = recorder_factory
        self.probe_idle_s = probe_idle_s
        self.max_probe_sessions = max_probe_sessions
        self.sessions: dict[str, Session] = {}  # by name
        self.by_url: dict[str, Session] = {}
        self.configured: set[str] = set()
        self._client: aiohttp.ClientSession | None = None
        self._reaper: asyncio.Task[None] | None = None

    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            # WebSockets hold their connection for the whole session: no pool limit.
            self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._client

    def _options_for(self, target: Target) -> SessionOptions:
        from dataclasses import replace

        opts = replace(self.options, interval_ms=target.interval_ms, retention_ms=target.retention_ms)
        if target.stale_intervals is not None:
            opts.stale_intervals = target.stale_intervals
        return opts

    def add(self, target: Target, *, configured: bool = True) -> Session:
        """Start a session for ``target`` (or return the running one with that name)."""
        existing = self.sessions.get(target.name)
        if existing is not None:
            return existing
        recorder = self.recorder_factory(target.name) if self.recorder_factory else None
        session = Session(
            self.hub,
            target.name,
            target.url,
            self._options_for(target),
            labels=target.labels,
            client=self.client(),
            recorder=recorder,
        )
        self.sessions[target.name] = session
        self.by_url.setdefault(target.url, session)
        if configured:
            self.configured.add(target.name)
        session.start()
        if self._reaper is None and self.probe_idle_s > 0:
            self._reaper = asyncio.create_task(self._reap_loop(), name="probe reaper")
        return session

    def probe(self, url: str) -> Session:
        """The session for ``url``, started on first use; a later probe reuses it."""
        session = self.by_url.get(url)
        if session is None:
            if sum(1 for n in self.sessions if n not in self.configured) >= self.max_probe_sessions:
                raise OverflowError(f"already {self.max_probe_sessions} probe sessions")
            name = default_name(url)
            if name in self.sessions:
                name = url
            session = self.add(Target(url=url, name=name, interval_ms=self.options.interval_ms), configured=False)
        session.last_used = time.monotonic()
        return session

    async def remove(self, name: str) -> None:
        session = self.sessions.pop(name, None)
        if session is None:
            return
        if self.by_url.get(session.url) is session:
            del self.by_url[session.url]
        self.configured.discard(name)
        await session.close()
        self.hub.remove(name)

    async def reap_idle(self, now: float | None = None) -> list[str]:
        """Close probe-started sessions idle for longer than ``probe_idle_s``; returns their names."""
        now = time.monotonic() if now is None else now
        idle = [
            name
            for name, s in self.sessions.items()
            if name not in self.configured and now - s.last_used > self.probe_idle_s
        ]
        for name in idle:
            log.info("closing probe session %s: not probed for %.0fs", name, self.probe_idle_s)
            await self.remove(name)
        return idle

    async def _reap_loop(self) -> None:
        period = max(0.05, min(30.0, self.probe_idle_s / 4))
        while True:
            await asyncio.sleep(period)
            await self.reap_idle()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def run(self, targets: list[Target]) -> None:
        """Start ``targets`` and run until cancelled; closes every session on the way out."""
        for t in targets:
            self.add(t)
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()
