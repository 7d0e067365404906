"""``GET /probe?target=ws://…``: Prometheus' multi-target pattern, governed.

An open /probe dials whatever it is told: cloud metadata addresses, loopback services, the exporter
itself, chained ``/probe?target=`` URLs. So it is off unless ``--probe.enable`` (or an allow-list)
is given; with ``--probe.allow`` patterns a target must fully match one of them; URLs with
credentials, control characters or that lead back to this exporter are refused with 400. Probed
nodes are served by /probe alone, never on /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote, urlsplit

from aiohttp import web

from exporter.model.text import clean_label, has_userinfo, safe_text
from exporter.pipeline.hub import Hub
from exporter.selfaddr import listening, reaches
from exporter.server import on_loop, parse_listen, serve_exposition
from exporter.sources.manager import SessionManager
from exporter.sources.options import Target

# How long the first /probe of a target waits for its first State before answering anyway.
FIRST_PROBE_WAIT_S = 5.0
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass
class ProbePolicy:
    """Whether /probe is served, and which targets it may dial."""

    enabled: bool = False
    allow: Sequence[str] = ()  # regular expressions, each matched against the whole target URL
    listen: str = ""  # this exporter's own address, never a target
    _compiled: list[re.Pattern[str]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._compiled = [re.compile(p) for p in self.allow]

    def refusal(self, target: str) -> str | None:
        """Why ``target`` may not be probed (for a 400), or None."""
        if not target:
            return "missing target parameter (/probe?target=ws://HOST:PORT/introspect)"
        if any(not ch.isprintable() or ch.isspace() for ch in target):
            return "target contains control or space characters"
        if has_userinfo(target):
            return "target carries credentials (user:password@); they are refused, never logged or exported"
        try:
            parts = urlsplit(target)
            port = parts.port
        except ValueError as exc:
            return f"target is not a URL: {exc}"
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            return "target must be a ws:// or wss:// URL with a host"
        path, query = _decoded(parts.path), _decoded(parts.query)
        if "/probe" in path.lower() or "target=" in query.lower():
            return "target is itself a /probe URL (chained probes are refused)"
        if self._is_self(parts.hostname, port or (443 if parts.scheme == "wss" else 80)):
            return "target is this exporter"
        if self._compiled and not any(p.fullmatch(target) for p in self._compiled):
            return "target matches no --probe.allow pattern"
        return None

    def listeners(self) -> list[tuple[str | None, int]]:
        """This exporter's listen sockets: as bound, and as configured (until bound)."""
        own: list[tuple[str | None, int]] = list(listening())
        if self.listen:
            with contextlib.suppress(ValueError):
                own.append(parse_listen(self.listen))
        return own

    def _is_self(self, host: str, port: int) -> bool:
        """The spellings decided without DNS: this host's loopback names and every numeric form
        (IPv4-mapped IPv6, hex, octal and integer IPv4 as the C resolver reads them)."""
        own = self.listeners()
        if host.lower() in _LOOPBACK_NAMES:
            return reaches("127.0.0.1", port, own) or reaches("::1", port, own)
        return any(reaches(ip, port, own) for ip in _numeric(host, port))

    async def resolves_to_self(self, target: str) -> bool:
        """Whether any address ``target``'s host resolves to now is this exporter's listener. (The
        session's connector checks again on every socket it opens: DNS may answer otherwise later.)"""
        parts = urlsplit(target)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
        except (OSError, UnicodeError, asyncio.TimeoutError):
            return False  # unresolvable now: the session reports it; the connector still guards
        own = self.listeners()
        return any(reaches(str(info[4][0]), port, own) for info in infos)


RESOLVE_TIMEOUT_S = 2.0


def _decoded(text: str) -> str:
    """Percent-decoding repeated until nothing changes (bounded): ``%2570robe`` is ``/probe`` too."""
    for _ in range(5):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _numeric(host: str, port: int) -> list[str]:
    """The addresses a numeric host spells (none for a name)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def probe_node_name(url: str, taken: Callable[[str], bool]) -> str:
    """A bounded, printable ``node`` label for a probed URL: ``host:port[/path]``, else a hashed form."""
    parts = urlsplit(url)
    name = clean_label(parts.netloc + ("" if parts.path in ("", "/", "/introspect") else parts.path))
    if taken(name):
        name = clean_label(url, 100) + "#" + hashlib.sha256(url.encode()).hexdigest()[:8]
    return name


class ProbeScope(Protocol):
    """What /probe asks of the running configuration (live mode's ``LiveState``)."""

    policy: ProbePolicy

    def configured(self, url: str) -> Target | None: ...

    def elsewhere(self, url: str) -> str | None: ...


@dataclass
class FixedScope:
    """A scope with no configured targets: /probe governed by ``policy`` alone."""

    policy: ProbePolicy

    def configured(self, url: str) -> Target | None:
        return None

    def elsewhere(self, url: str) -> str | None:
        return None


def probe_handler(
    hub: Hub, manager: SessionManager, scope: ProbeScope | ProbePolicy
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The /probe route: that target's metrics alone, its session started on first use.

    A configured target this replica watches is always served (that dials nothing new: it is how
    /discovery's targets are scraped); another shard's target is refused with 404; anything else is
    up to the probe policy.
    """
    if isinstance(scope, ProbePolicy):
        scope = FixedScope(scope)
    home = asyncio.get_running_loop()  # the sessions' loop; the HTTP side may run on another

    async def probe(request: web.Request) -> web.StreamResponse:
        target = request.query.get("target", "")
        configured = scope.configured(target) if target else None
        if configured is not None:
            return await serve_exposition(request, configured.name)
        elsewhere = scope.elsewhere(target) if target else None
        if elsewhere:
            return web.Response(status=404, text=f"{safe_text(elsewhere)}\n")
        policy = scope.policy
        if not policy.enabled:
            return web.Response(status=404, text="/probe is off; start the exporter with --probe.enable\n")
        problem = policy.refusal(target)
        if problem is None and await policy.resolves_to_self(target):
            problem = "target is this exporter (its host resolves to this exporter's listen address)"
        if problem:
            return web.Response(status=400, text=f"bad target parameter: {safe_text(problem)}\n")
        header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")

        async def start() -> str | web.Response:
            """On the sessions' loop: the probe session (started on first use), once it has data."""
            fresh_session = target not in manager.by_url
            try:
                session = manager.probe(target, name=lambda url: probe_node_name(url, manager.sessions.__contains__))
            except OverflowError as exc:
                return web.Response(status=503, text=f"{exc}\n")
            if fresh_session and not session.first_state.is_set():
                # The first probe waits a little for data, within Prometheus' scrape timeout.
                budget = FIRST_PROBE_WAIT_S
                if header:
                    with contextlib.suppress(ValueError):
                        budget = min(budget, max(0.0, float(header) - 0.5))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(session.first_state.wait(), budget)
            return session.name

        started = await on_loop(home, start)
        if isinstance(started, web.Response):
            return started
        return await serve_exposition(request, started)

    return probe
