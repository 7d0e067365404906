"""Many live sessions over one aiohttp client: the configured targets, plus those ``/probe`` asks for."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import aiohttp

from exporter.pipeline.hub import Hub
from exporter.selfaddr import refuse_self_dial
from exporter.settings import Probe
from exporter.sources.buffer import SharedBudget
from exporter.sources.fairness import IngestGate
from exporter.sources.governor import Governor, GovernorOptions
from exporter.sources.options import Recorder, SessionOptions, Target, default_name
from exporter.sources.websocket import Session

log = logging.getLogger(__name__)

DRAIN_S = 1.0  # at shutdown, how long all sessions together may still ingest what they buffered


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
        probe_idle_s: float = Probe.idle_s,
        max_probe_sessions: int = Probe.max_sessions,
        hide_nodes: bool = False,
        governor: GovernorOptions | None = None,
    ) -> None:
        self.hub = hub
        self.options = options or SessionOptions()
        self.recorder_factory = recorder_factory
        self.probe_idle_s = probe_idle_s
        self.max_probe_sessions = max_probe_sessions
        self.sessions: dict[str, Session] = {}  # by name
        self.by_url: dict[str, Session] = {}
        self.configured: set[str] = set()
        self.targets: dict[str, Target] = {}  # the configured targets, by name, as last started
        self.started = False  # run() has added its targets (until then, the caller knows them)
        self.hide_nodes = hide_nodes  # nodes served by /probe only (``--metrics.nodes none``)
        self._client: aiohttp.ClientSession | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.budget = SharedBudget(self.options.total_queue_bytes)  # all targets' buffers together
        self.gate = IngestGate(busy=hub.rendering.__bool__)  # sessions take turns; a full scrape goes first
        # Asks every node for fewer States when the loop falls behind, more when there is room.
        self.governor = Governor(
            lambda: self.sessions.values(),
            governor,
            spans=hub.span_share,
            flow=lambda: (self.budget.states_in, self.budget.states_taken),
        )

    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            # WebSockets hold their connection for the whole session: no pool limit. Every socket is
            # checked, as dialled, against this exporter's own listener (redirects and reconnects too).
            connector = aiohttp.TCPConnector(limit=0, socket_factory=refuse_self_dial)
            self._client = aiohttp.ClientSession(connector=connector)
        return self._client

    def _options_for(self, target: Target) -> SessionOptions:
        opts = replace(self.options, interval_ms=target.interval_ms, retention_ms=target.retention_ms)
        if target.stale_intervals is not None:
            opts.stale_intervals = target.stale_intervals
        return opts

    def add(self, target: Target, *, configured: bool = True) -> Session:
        """Start a session for ``target`` (or return the running one with that name)."""
        existing = self.sessions.get(target.name)
        if existing is not None:
            return existing
        recorder = None
        failed: OSError | None = None
        if self.recorder_factory:
            try:
                recorder = self.recorder_factory(target.name)
            except OSError as exc:  # the directory went away or filled up: watch without recording
                failed = exc
        session = Session(
            self.hub,
            target.name,
            target.url,
            self._options_for(target),
            labels=target.labels,
            client=self.client(),
            recorder=recorder,
            budget=self.budget,
            gate=self.gate,
        )
        self.sessions[target.name] = session
        if self.recorder_factory:
            session.stats.recording = True
        if failed is not None:
            session.recording_failed(failed)
        self.by_url.setdefault(target.url, session)
        if configured:
            self.configured.add(target.name)
            self.targets[target.name] = target
        if self.hide_nodes:
            session.node.hidden = True
        session.governor = self.governor
        session.start()
        self.governor.start()
        if self._reaper is None and self.probe_idle_s > 0:
            self._reaper = asyncio.create_task(self._reap_loop(), name="probe reaper")
        return session

    def probe(self, url: str, name: Callable[[str], str] | None = None) -> Session:
        """The session for ``url``, started on first use; a later probe reuses it. A node only
        probed is hidden from /metrics (``NodeState.hidden``): /probe alone serves it."""
        session = self.by_url.get(url)
        if session is None:
            if sum(1 for n in self.sessions if n not in self.configured) >= self.max_probe_sessions:
                raise OverflowError(f"already {self.max_probe_sessions} probe sessions")
            if name is not None:
                node_name = name(url)
            else:
                node_name = default_name(url)
                if node_name in self.sessions:
                    node_name = url
            target = Target(url=url, name=node_name, interval_ms=self.options.interval_ms)
            session = self.add(target, configured=False)
            session.node.hidden = True
        session.last_used = time.monotonic()
        return session

    async def remove(self, name: str) -> None:
        session = self.sessions.pop(name, None)
        if session is None:
            return
        if self.by_url.get(session.url) is session:
            del self.by_url[session.url]
        self.configured.discard(name)
        self.targets.pop(name, None)
        await session.close()
        self.hub.remove(name)

    async def sync(self, targets: list[Target]) -> tuple[list[str], list[str], list[str]]:
        """Make the configured sessions match ``targets`` (a reload): new ones start, removed ones
        stop and their node (with its series) goes, changed ones restart; an unchanged target keeps
        its session, its node and its counters. Returns the names (added, removed, restarted)."""
        wanted = {t.name: t for t in targets}
        removed = [n for n in self.targets if n not in wanted]
        restarted = [n for n, t in wanted.items() if n in self.targets and self.targets[n] != t]
        added = [n for n in wanted if n not in self.targets]
        for name in removed + restarted:
            await self.remove(name)
        for name in added + restarted:
            prober = self.by_url.get(wanted[name].url)
            for other in {name, prober.name if prober else name}:
                if other in self.sessions and other not in self.configured:
                    await self.remove(other)  # a probe session for it: the configured target wins
            self.add(wanted[name])
        return added, removed, restarted

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
        await self.governor.close()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        # A shutdown must not wait for every backlog to be ingested: a second for all, then drop.
        deadline = time.monotonic() + DRAIN_S
        for s in self.sessions.values():
            s.drain_deadline = deadline
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    def current_targets(self, configured: list[Target]) -> list[Target]:
        """The targets this manager watches; before ``run()`` has added them (HTTP answers first),
        ``configured``: /discovery must never answer ``[]`` for a replica that is starting."""
        return list(self.targets.values()) if self.started else list(configured)

    async def run(self, targets: list[Target]) -> None:
        """Start ``targets`` and run until cancelled; closes every session on the way out."""
        for t in targets:
            self.add(t)
        self.started = True
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()
