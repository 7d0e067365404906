"""Live sources: the introspection WebSocket client (docs/protocol.md sections 2 and 3).

A ``Session`` keeps one node's stream flowing into the hub for as long as it runs: connect, HELLO
with the wanted configuration, then REQUEST RUNTIME, PUSH_ENABLE EVENTS and PUSH_ENABLE STATE; on
any failure it backs off (exponential, jittered, capped) and tries again. A ``SessionManager`` runs
many sessions (``exporter.sources.manager``).

Between the socket and the hub sits a bounded buffer. A flood of events is dropped (and counted)
rather than queued without limit, and States are preferred over events, so a slow pipeline shows
current snapshots instead of stale ones. States and events wait there unparsed (``segments``): a
State superseded by a newer one before its turn is never parsed (issue 20, docs/live.md#overload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import NoReturn

import aiohttp

from exporter.logs import RateLimitedLog
from exporter.model.text import redact_url, safe_text
from exporter.pipeline.hub import Hub
from exporter.pipeline.session import SessionStats
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.commands import Command, Source, command
from exporter.protocol.framing import WIRE_HEADER, SegmentError
from exporter.sources.buffer import Backoff, BoundedBuffer, SharedBudget
from exporter.sources.fairness import IngestGate
from exporter.sources.flow import FlowControl, _reason
from exporter.sources.governor import Governor
from exporter.sources.ingest import OFFLOAD_BYTES, IngestSide
from exporter.sources.liveness import input_waiting, stamp_arrivals
from exporter.sources.options import Recorder, SessionOptions
from exporter.sources.segments import Item, RawSegment, kind_of, split_frame

log = logging.getLogger(__name__)
# A target that stays down is logged when it goes down and then summarised every 5 minutes, not once
# per attempt (a 17-minute demo with nodes stopped on purpose logged 214 reconnect warnings).
RECONNECT_LOG_INTERVAL_S = 300.0


class HelloRefused(Exception):
    """The server answered HELLO with ERR."""


class SessionEnded(Exception):
    """The session cannot go on; the reason is the counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Session(IngestSide, FlowControl):
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
        budget: SharedBudget | None = None,
        gate: IngestGate | None = None,
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
        self._ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._surprises: set[str] = set()  # kinds of unexpected error already logged
        self.shown_url = redact_url(url)  # for logs: never the credentials
        self.backoff = Backoff(
            self.opts.backoff_initial_s,
            self.opts.backoff_max_s,
            self.opts.backoff_factor,
            self.opts.backoff_jitter,
            rng,
        )
        self.buffer = BoundedBuffer(
            self.opts.queue_size,
            self.stats.dropped,
            self.opts.queue_bytes,
            budget,
            self.opts.queue_states,
            shed=self.stats.shed,
        )
        self.gate = gate or IngestGate()
        # When set (a shutdown), buffered messages still unread at this monotonic time are given up.
        self.drain_deadline: float | None = None
        self._frame_share = 0  # wire bytes per message of the frame being handled
        self.last_used = time.monotonic()  # for /probe idle reaping
        self.first_state = asyncio.Event()
        # The ingest governor (exporter.sources.governor) decides the interval asked; None: --interval.
        self.governor: Governor | None = None
        self.update_refused = False  # this session's node answered UPDATE_CONFIG with ERR
        self._sends: set[asyncio.Task[None]] = set()
        # Liveness is the node's: the last moment (monotonic) bytes of this session reached the
        # process, stamped where the transport hands them over, not where the pipeline gets to them.
        self.heard = time.monotonic()
        with self.node.lock:
            self.node.session = self.stats  # what the session mapper exports for this node

    # -- public API -------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Run in the background; ``close()`` stops it."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"session {self.name}")
        return self._task

    # After an unexpected error outside one attempt (a bug), wait this long before trying again.
    RETRY_AFTER_BUG_S = 1.0

    async def run(self) -> None:
        """Connect, stream, and on any failure back off and reconnect, until ``close()``.

        Nothing but ``close()`` (or cancellation) ends this loop: an unexpected exception anywhere
        in an attempt or in the backoff is logged once per kind, counted as ``error`` and retried."""
        consumer = asyncio.create_task(self._consume(), name=f"ingest {self.name}")
        try:
            while not self._closing:
                try:
                    await self._attempt()
                except Exception as exc:
                    self._unexpected(exc)
                    self.stats.failures["error"] += 1
                    self.stats.state = "backoff"
                    await asyncio.sleep(max(self.RETRY_AFTER_BUG_S, self.opts.backoff_initial_s))
        finally:
            self.stats.state = "closed"
            self.reconnect_log.flush()  # suppressed warnings are reported when the session ends
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            self._drain()
            self.buffer.close()
            if self._own_client and self._client is not None:
                await self._client.close()
                self._client = None

    def _unexpected(self, exc: BaseException) -> None:
        """Log a surprise with its traceback the first time its kind is seen, at debug level after."""
        kind = type(exc).__name__
        if kind in self._surprises:
            log.debug("node %s: unexpected %s again: %s", self.name, kind, safe_text(str(exc)))
            return
        self._surprises.add(kind)
        log.error(
            "node %s: unexpected error in the session, retrying: %s: %s",
            self.name,
            kind,
            safe_text(str(exc)),
            exc_info=exc,
        )

    async def _attempt(self) -> None:
        """One connection attempt and the backoff after it."""
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
            reason, detail = "connect", f"{type(exc).__name__}: {safe_text(str(exc))}"
        except Exception as exc:  # a bug or a surprise must not end the session for good
            self._unexpected(exc)
            reason, detail = "error", f"{type(exc).__name__}: {safe_text(str(exc))}"
        finally:
            ws, self._ws = self._ws, None
            if ws is not None and not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        if self._closing:
            return
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
            self.name, "node %s (%s): %s; reconnecting in %.1fs", self.name, self.shown_url, detail, delay
        )
        self.stats.state = "backoff"
        await asyncio.sleep(delay)

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
            try:
                self.recorder.close()
            except OSError as exc:
                self.recording_failed(exc)

    # -- one connection -----------------------------------------------------------------------
    def _id(self, what: str) -> int:
        self._next_id += 1
        self._pending[self._next_id] = what
        if len(self._pending) > 64:  # answers that never came; forget the oldest
            self._pending.pop(next(iter(self._pending)))
        return self._next_id

    async def _send(
        self, ws: aiohttp.ClientWebSocketResponse[bool], what: str, cmd: Command, source: Source, **config: int
    ) -> int:
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
        if self._closing:
            # close() came while connecting; before Python 3.12, wait_for can swallow the cancel
            # that came with it when the connect finishes at the same moment, and the session would
            # then stream on, with close() waiting for it forever.
            raise asyncio.CancelledError
        self.stats.state = "handshaking"
        opts = self.opts
        self.update_refused = False
        ask = self.governor.interval_for(self) if self.governor is not None else opts.interval_ms
        hello = await self._send(
            ws,
            "HELLO",
            pb.ClientCommand.HELLO,
            pb.ClientCommand.STATE,
            interval_ms=ask,
            retention_ms=opts.retention_ms,
        )
        self.stats.requested_interval_ms = ask
        deadline = time.monotonic() + opts.handshake_timeout_s
        config: pb.Configuration | None = None
        while config is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionEnded("timeout", f"no answer to HELLO within {opts.handshake_timeout_s}s")
            for msg in await self._receive(ws, remaining):
                # Responses are parsed as they arrive (only States and events wait raw).
                if isinstance(msg, pb.ServerMessage) and kind_of(msg) == "response" and msg.response.id in (hello, 0):
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
        log.info("node %s (%s): session up, interval %d ms", self.name, self.shown_url, interval)
        states_before = self.node.messages.get("state", 0)
        try:
            while True:
                # The agreed interval may change (UPDATE_CONFIG), and the read timeout with it.
                read_timeout = opts.effective_read_timeout(self.stats.effective_interval_ms or interval)
                for msg in await self._receive_live(ws, read_timeout):
                    self._accept(msg)
        except SessionEnded as exc:
            if exc.reason == "closed":
                return self.node.messages.get("state", 0) > states_before or bool(self.buffer)
            raise

    async def _connect(self) -> aiohttp.ClientWebSocketResponse[bool]:
        assert self._client is not None
        # No aiohttp heartbeat and no autoping: aiohttp's pong timer is a loop timer, and on a busy
        # loop it fires before the pong that already sits in the socket is read, tearing a live node
        # down for the exporter's own delay. The session pings and judges silence itself
        # (``_receive_live``), from when bytes arrived, not from when the loop got to them.
        ws = await self._client.ws_connect(
            self.url,
            heartbeat=None,
            # aiohttp refuses a message of exactly max_msg_size bytes; the limit includes its value.
            max_msg_size=self.opts.max_frame_bytes + 1,
            autoping=False,
        )
        self.heard = time.monotonic()
        stamp_arrivals(ws, self._arrived)
        return ws

    def _arrived(self) -> None:
        self.heard = time.monotonic()

    async def _receive_live(self, ws: aiohttp.ClientWebSocketResponse[bool], read_timeout: float) -> list[Item]:
        """The next data frame's messages while streaming. The node is stalled only when *it* has been
        silent for ``read_timeout`` (nothing arrived, nothing waiting in the socket); with a heartbeat,
        a ping goes out after ``heartbeat_s`` of silence and a pong late by half that, with nothing
        waiting, is a dead peer. A loop too busy to read is never taken for a silent node."""
        heartbeat = self.opts.heartbeat_s
        ping_sent: float | None = None
        while True:
            now = time.monotonic()
            deadlines = [self.heard + read_timeout]
            if heartbeat:
                deadlines.append(ping_sent + heartbeat / 2 if ping_sent is not None else self.heard + heartbeat)
            wait = max(0.001, min(deadlines) - now)
            try:
                return await self._receive(ws, wait)
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            if input_waiting(ws):
                self.heard = now
            if ping_sent is not None and self.heard >= ping_sent:
                ping_sent = None  # something (the pong, or data) came after the ping
            if now - self.heard >= read_timeout:
                raise SessionEnded("stalled", f"nothing received for {read_timeout:.1f}s")
            if heartbeat and ping_sent is not None and now - ping_sent >= heartbeat / 2:
                raise SessionEnded("heartbeat", "no pong from the peer")
            if heartbeat and ping_sent is None and now - self.heard >= heartbeat:
                ping_sent = now
                try:
                    await ws.ping()
                except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                    raise SessionEnded("error", f"ping failed: {safe_text(str(exc))}") from None

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse[bool], timeout: float) -> list[Item]:
        """The messages of the next data frame (possibly none); SessionEnded when the socket is gone."""
        while True:
            frame = await ws.receive(timeout=timeout)
            self.heard = time.monotonic()
            if frame.type == aiohttp.WSMsgType.PING:
                await ws.pong(frame.data)
                continue
            if frame.type == aiohttp.WSMsgType.PONG:
                continue
            if frame.type == aiohttp.WSMsgType.BINARY:
                self.stats.frames["binary"] += 1
                if len(frame.data) >= OFFLOAD_BYTES:
                    return await asyncio.get_running_loop().run_in_executor(None, self._decode, frame.data)
                return self._decode(frame.data)
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.stats.frames["text"] += 1
                try:
                    data = frame.data.encode("latin-1")
                except UnicodeEncodeError:
                    self.hub.errors(self.name, [SegmentError(0, "frame", "text frame with characters above U+00FF", 0)])
                    return []
                return self._decode(data)
            too_big = ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                if too_big:  # aiohttp may report our own 1009 close as a CLOSED frame
                    self._too_big()
                raise SessionEnded("closed", f"server closed the connection ({ws.close_code})")
            if frame.type == aiohttp.WSMsgType.ERROR:
                exc = ws.exception()
                # aiohttp 3.14 gives ERROR with no exception ("WebSocket error: None") and close code
                # 1009 for a message over max_msg_size; older versions a WebSocketError "too big".
                if too_big or (isinstance(exc, aiohttp.WebSocketError) and "too big" in str(exc).lower()):
                    self._too_big()
                if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
                    raise SessionEnded("heartbeat", "no pong from the peer")
                raise SessionEnded("error", f"WebSocket error: {exc}")
            # anything else is ignored

    def _too_big(self) -> NoReturn:
        self.hub.errors(
            self.name, [SegmentError(0, "frame", f"WebSocket message over {self.opts.max_frame_bytes} bytes", 0)]
        )
        raise SessionEnded("frame", f"WebSocket message over {self.opts.max_frame_bytes} bytes")

    def _decode(self, data: bytes) -> list[Item]:
        """Split a frame; States and events stay raw until their turn (``exporter.sources.segments``)."""
        items, errors = split_frame(data, self.opts.max_segment_bytes, time.monotonic())
        self._frame_share = len(data) // max(1, len(items))
        if errors:
            self.hub.errors(self.name, errors)
        return items

    def _accept(self, msg: Item) -> None:
        """Queue one message for the hub, and log an ERR answer to one of our commands."""
        kind = kind_of(msg)
        if kind == "response":
            assert isinstance(msg, pb.ServerMessage)  # responses are parsed as they arrive
            what = self._pending.pop(msg.response.id, f"command {msg.response.id}")
            if what == "UPDATE_CONFIG":
                self._updated(msg.response)
            elif msg.response.result == pb.CommandResponse.ERR:
                log.warning("node %s: %s refused: %s", self.name, what, _reason(msg.response.error))
        if kind == "state":
            self.node.last_state_arrived_wall = time.time()
        nbytes = len(msg.payload) + WIRE_HEADER.size if isinstance(msg, RawSegment) else self._frame_share
        self.buffer.put(msg, nbytes)
        self.stats.queue_depth = len(self.buffer)
        self.stats.queue_high_water = max(self.stats.queue_high_water, self.stats.queue_depth)
