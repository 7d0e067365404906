"""The ingest governor's side of a live session: the interval asked of its node with UPDATE_CONFIG,
and the node's answer (exporter.sources.governor decides what to ask)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import aiohttp

from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.commands import command

if TYPE_CHECKING:
    from exporter.pipeline.node import NodeState
    from exporter.pipeline.session import SessionStats
    from exporter.sources.buffer import BoundedBuffer
    from exporter.sources.options import SessionOptions

log = logging.getLogger("exporter.sources.websocket")


def _reason(error: str) -> str:
    """A server's error text for one log line: quoted (no line breaks) and at most 200 characters."""
    return repr(error[:200]) if error else "no reason given"


class FlowControl:
    """Mixed into ``Session``: what it needs of one is declared here."""

    name: str
    opts: SessionOptions
    stats: SessionStats
    node: NodeState
    buffer: BoundedBuffer
    update_refused: bool
    _ws: aiohttp.ClientWebSocketResponse[bool] | None
    _sends: set[asyncio.Task[None]]

    def _id(self, what: str) -> int:
        raise NotImplementedError

    def base_interval_ms(self) -> int:
        return self.opts.interval_ms

    def retention_ms(self) -> int:
        return self.stats.effective_retention_ms or self.opts.retention_ms

    def oldest_state_arrival(self) -> float | None:
        return self.buffer.oldest_state_arrival()

    def agreed_interval_ms(self) -> int:
        return self.stats.effective_interval_ms if self.stats.state == "streaming" else 0

    def ask_interval(self, interval_ms: int) -> None:
        """Ask the node for another State interval (UPDATE_CONFIG) while streaming; a node that
        refused it once this session is not asked again (shedding alone governs it)."""
        ws = self._ws
        if (
            ws is None
            or ws.closed
            or self.stats.state != "streaming"
            or self.update_refused
            or interval_ms == self.stats.requested_interval_ms
        ):
            return
        self.stats.requested_interval_ms = interval_ms
        data = command(
            self._id("UPDATE_CONFIG"),
            pb.ClientCommand.UPDATE_CONFIG,
            pb.ClientCommand.STATE,
            interval_ms=interval_ms,
            retention_ms=self.opts.retention_ms,
        )
        task = asyncio.create_task(self._send_quietly(ws, data), name=f"update config {self.name}")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_quietly(self, ws: aiohttp.ClientWebSocketResponse[bool], data: bytes) -> None:
        with contextlib.suppress(Exception):  # a socket going away is the read side's to notice
            await ws.send_bytes(data)

    def _updated(self, resp: pb.CommandResponse) -> None:
        """UPDATE_CONFIG's answer: the agreed interval (and staleness window), or a refusal."""
        if resp.result == pb.CommandResponse.ERR:
            self.update_refused = True
            self.stats.requested_interval_ms = self.stats.effective_interval_ms
            log.warning(
                "node %s: UPDATE_CONFIG refused (%s); its States are governed by shedding alone this session",
                self.name,
                _reason(resp.error),
            )
            return
        cfg = resp.effective_config
        interval = cfg.state_snapshot_interval_ms or self.stats.requested_interval_ms
        self.stats.effective_interval_ms = interval
        if cfg.retention_period_ms:
            self.stats.effective_retention_ms = cfg.retention_period_ms
        self.node.stale_after_s = self.opts.stale_intervals * interval / 1000.0
