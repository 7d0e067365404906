"""The HTTP face: /metrics, /healthz and a landing page (aiohttp).

Other routes (such as /probe for live targets) are added by the sources that need them through
``extra_routes``; the server itself only knows the hub.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import html
import logging
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar
from urllib.parse import quote

from aiohttp import web, web_protocol

from exporter import __version__
from exporter.model.text import redact_url
from exporter.pipeline.hub import Hub
from exporter.selfaddr import forget_listening, record_listening
from exporter.settings import Serving
from exporter.sinks.prometheus import Exposition
from exporter.web_auth import install as install_web_config
from exporter.web_config import WebConfigWatcher

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Told of every /metrics answer: (arrival time, scraper's timeout header, seconds to the body, the
# scrape duration the body reported or None when it failed). The scrape journal listens here.
ScrapeHook = Callable[[float, str | None, float, float | None], None]
# The app's exposition (per-node blocks cached between scrapes), shared by /metrics and /probe.
EXPOSITION = web.AppKey("exposition", Exposition)
SCRAPE_HOOK = web.AppKey[ScrapeHook]("scrape_hook")
TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
CHUNK_BYTES = 1 << 20  # what /metrics copies and sends at a time
GZIP_LEVEL = 1  # as encode_body: a 1,000-node body 24x smaller at level 1, for a quarter of level 6's CPU


async def serve_exposition(request: web.Request, node: str | None = None) -> web.StreamResponse:
    """The whole exposition (rendered on a worker thread), or one node's part (``/probe``, inline).

    Format by ``Accept`` (OpenMetrics or text), gzip when ``Accept-Encoding`` allows it.
    """
    exposition = request.app[EXPOSITION]
    accept = request.headers.get("Accept", "")
    encoding = request.headers.get("Accept-Encoding", "")
    loop = asyncio.get_running_loop()
    hook = request.app.get(SCRAPE_HOOK) if node is None else None
    if node is not None:
        # One node's block (a millisecond or two when it changed, nothing when cached), rendered
        # right here: a hop to a worker thread costs more, since every hop waits its turn for the
        # interpreter behind a busy ingest loop (8 probes in flight: p50 126 ms that way).
        body, headers = exposition.respond(accept, encoding, node)
        return web.Response(body=body, headers=headers)
    if hook is None:
        parts, headers, gz = await loop.run_in_executor(None, exposition.respond_parts, accept, encoding)
        return await stream(request, parts, headers, gz)
    arrived, started = time.time(), time.perf_counter()
    timeout = request.headers.get(TIMEOUT_HEADER)

    def respond() -> tuple[list[bytes], dict[str, str], bool, float | None]:
        return (*exposition.respond_parts(accept, encoding), exposition.reported_duration())

    try:
        parts, headers, gz, reported = await loop.run_in_executor(None, respond)
    except Exception:
        hook(arrived, timeout, time.perf_counter() - started, None)
        raise
    hook(arrived, timeout, time.perf_counter() - started, reported)
    return await stream(request, parts, headers, gz)


def chunks(parts: list[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``parts`` regrouped into pieces of about ``size`` bytes (a big part goes alone)."""
    group: list[bytes] = []
    held = 0
    for part in parts:
        group.append(part)
        held += len(part)
        if held >= size:
            yield b"".join(group)
            group, held = [], 0
    if group:
        yield b"".join(group)


async def stream(request: web.Request, parts: list[bytes], headers: dict[str, str], gz: bool) -> web.StreamResponse:
    """Send the exposition a chunk at a time, gzipped on the way when asked.

    Why not one body: at 1,000 nodes it is 60 MB, and joined, then copied into the socket's buffer,
    it was held twice at every scrape (RSS peaks of +120 MB, +480 MB at 4,000). The parts are the
    cached blocks themselves; a chunk of about 1 MiB at a time is what is copied.
    """
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    try:
        await send_chunks(response.write, parts, gz)
        await response.write_eof()
    except ConnectionResetError:  # the scraper went away mid-body: nobody left to answer
        pass
    return response


async def send_chunks(write: Callable[[bytes], Awaitable[None]], parts: list[bytes], gz: bool) -> None:
    """``parts`` through ``write`` about 1 MiB at a time (gzipped when ``gz``), giving the loop a turn
    after each chunk: ``write`` suspends only when the socket's buffer is full, and a scraper that reads
    as fast as it is sent never fills it, so without the turn a 120 MB body held this loop (and every
    ``/healthz`` behind it) for its 3 s (``/healthz`` p99 360 ms at 2,000 nodes)."""
    squeeze = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gz else None  # 31: a gzip stream
    for chunk in chunks(parts, CHUNK_BYTES):
        await write(squeeze.compress(chunk) if squeeze is not None else chunk)
        await asyncio.sleep(0)
    if squeeze is not None:
        await write(squeeze.flush())


def parse_listen(address: str) -> tuple[str | None, int]:
    """``host:port``, ``[v6]:port``, or ``:port`` / ``[::]:port`` for every interface, IPv4 and IPv6.

    The host is None for every interface: one socket per address family, as Go's dual-stack listener
    behaves for node_exporter's ``:9100``. ``0.0.0.0:port`` stays IPv4 only and ``[::1]:port`` IPv6 only.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or (host.startswith("[") != host.endswith("]")):
        raise ValueError(f"listen address {address!r} is not host:port")
    if int(port) > 65535:
        raise ValueError(f"listen address {address!r}: port {port} is out of range (0-65535)")
    host = host[1:-1] if host.startswith("[") else host
    return (None if host in ("", "::") else host), int(port)


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{max(0.0, seconds):.1f}s"


def landing_page(hub: Hub, telemetry_path: str, description: str, routes: set[str]) -> str:
    """The landing page: links, then one row per node with what an operator asks first (is it current,
    at which interval, is the exporter keeping up with it). Every remote text is escaped."""
    now = time.time()
    links = [f'<a href="{html.escape(telemetry_path)}">Metrics</a>', '<a href="/healthz">Health</a>']
    links += [
        f'<a href="{path}">{label}</a>'
        for path, label in (("/discovery", "Discovery"), ("/config", "Configuration"))
        if path in routes
    ]
    rows = []
    for node in sorted(list(hub.nodes.values()), key=lambda n: n.name):
        rt = node.runtime
        who = f"{rt.implementation} {rt.version}, peer {rt.peer_id}" if rt else "no runtime yet"
        snap = node.last_step
        conns = snap.open_conns if snap else 0
        state = "up" if node.fresh() else "down"
        seen = max(node.last_snapshot_wall or 0.0, node.last_state_arrived_wall or 0.0) or None
        stats = node.session
        asked = f"{stats.requested_interval_ms / 1000:g}s" if stats and stats.requested_interval_ms else "-"
        agreed = f"{stats.effective_interval_ms / 1000:g}s" if stats and stats.effective_interval_ms else "-"
        shed = f"{stats.shed.get('state', 0)} / {stats.shed.get('event', 0)}" if stats else "-"
        probe = ""
        if stats is not None and stats.url and "/probe" in routes:
            href = "/probe?target=" + quote(redact_url(stats.url), safe="")
            probe = f'<a href="{html.escape(href)}">probe</a>'
        rows.append(
            f"<tr><td>{html.escape(node.name)}</td><td>{state}</td><td>{html.escape(who)}</td>"
            f"<td>{conns}</td><td>{node.messages.get('state', 0)}</td>"
            f"<td>{_age(now - seen if seen else None)}</td><td>{asked} / {agreed}</td><td>{shed}</td><td>{probe}</td></tr>"
        )
    return (
        f"<html><head><title>libp2p-exporter</title></head><body><h1>libp2p-exporter {__version__}</h1>"
        f"<p>{html.escape(description)}</p><p>{' · '.join(links)}</p>"
        "<table border=1><tr><th>node</th><th>state</th><th>runtime</th><th>open connections</th>"
        "<th>states received</th><th>last State</th><th>interval asked / agreed</th>"
        f"<th>shed before parsing (states / events)</th><th></th></tr>{''.join(rows)}</table></body></html>"
    )


def build_app(
    hub: Hub,
    telemetry_path: str = Serving.telemetry_path,
    extra_routes: list[tuple[str, str, Handler]] | None = None,
    description: str = "",
    on_scrape: ScrapeHook | None = None,
) -> web.Application:
    reserved = {"/", "/healthz", *(path for _, path, _ in extra_routes or [])}
    if not telemetry_path.startswith("/") or telemetry_path in reserved:
        raise ValueError(
            f"telemetry path {telemetry_path!r} must start with / and differ from {', '.join(sorted(reserved))}"
        )
    app = web.Application()
    app[EXPOSITION] = Exposition(hub)
    if on_scrape is not None:
        app[SCRAPE_HOOK] = on_scrape

    async def metrics(request: web.Request) -> web.StreamResponse:
        return await serve_exposition(request)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    routes = {path for _, path, _ in extra_routes or []}

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=landing_page(hub, telemetry_path, description, routes), content_type="text/html")

    app.router.add_get("/", index)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/healthz", healthz)
    for method, path, handler in extra_routes or []:
        app.router.add_route(method, path, handler)
    return app


def free_closed_transports() -> None:
    """Have a closed connection's transport freed when it closes, not at the next collection.

    CPython 3.11's selector transport keeps its read callback as a bound method of itself: a
    reference cycle that outlives the connection. Every HTTP connection closed (a ``/healthz`` or
    ``/probe`` client without keep-alive) left its transport, socket object and buffers for the
    cyclic collector, which the exporter runs rarely (app/gc_pacer.py): in a live exporter, 156
    connections in 30 s left 156 transports, and RSS crept by 10 MB in 18 minutes at 5 connections
    a second. Dropping the callback once the connection is lost breaks the cycle. Idempotent.
    """
    handler = web_protocol.RequestHandler
    if getattr(handler.connection_lost, "frees_transport", False):
        return
    lost = handler.connection_lost

    def connection_lost(self: web_protocol.RequestHandler, exc: BaseException | None) -> None:
        transport = self.transport
        lost(self, exc)
        if transport is not None and getattr(transport, "_read_ready_cb", None) is not None:
            transport._read_ready_cb = None  # type: ignore[attr-defined]

    connection_lost.frees_transport = True  # type: ignore[attr-defined]
    handler.connection_lost = connection_lost  # type: ignore[method-assign]


async def start_server(
    app: web.Application, listen: str = Serving.listen, web_config: WebConfigWatcher | None = None
) -> web.AppRunner:
    """Listen on ``listen``; with a web configuration, TLS and basic auth guard every path."""
    free_closed_transports()
    host, port = parse_listen(listen)
    ssl_context = None
    if web_config is not None:
        install_web_config(app, web_config)
        ssl_context = web_config.ssl_context()
        if ssl_context is not None and web_config.config.http2:
            log.info("web config: http2 is not served (HTTP/1.1 only; clients fall back through ALPN)")
    bound: list[tuple[str, int]] = []  # for the self-probe guard (exporter.selfaddr)

    async def unbind(_: web.Application) -> None:
        forget_listening(bound)

    app.on_cleanup.append(unbind)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)  # a stop must not wait on slow scrapes
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    scheme = "https" if ssl_context is not None else "http"
    for sock in getattr(site._server, "sockets", None) or ():  # one per address family for every interface
        addr = sock.getsockname()
        bound.append((str(addr[0]), int(addr[1])))
        shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        log.info("listening on %s://%s:%d", scheme, shown, addr[1])
    record_listening(bound)
    return runner


# -- the HTTP side on a thread of its own ---------------------------------------------------------
# Why (issue 20: the HTTP side always answers): sessions parse, ingest and reconnect on the main loop;
# under overload one of its iterations can take long, and a /healthz queued behind it would wait as
# long. ``HttpThread`` runs the listener on a loop nobody else loads: /healthz answers at once, and
# /metrics and /probe of a watched node render from the cached node blocks on worker threads, so the
# answer depends on the rendered data, never on how far behind ingest is. Routes that change what the
# main loop owns (a /probe that starts a session, a reload) hop to it with ``on_home_loop``/``on_loop``.

T = TypeVar("T")


async def on_loop(home: asyncio.AbstractEventLoop, make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` on ``home``: at once when already there, else handed over and awaited."""
    if asyncio.get_running_loop() is home:
        return await make()

    async def run() -> T:
        return await make()

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), home))


def on_home_loop(handler: Handler) -> Handler:
    """``handler``, always run on the loop this is called on (the one whose objects it touches)."""
    home = asyncio.get_running_loop()

    async def hop(request: web.Request) -> web.StreamResponse:
        return await on_loop(home, lambda: handler(request))

    return hop


class HttpThread:
    """``start()`` listens from a new thread (errors binding are raised here); ``stop()`` ends it."""

    def __init__(self, app: web.Application, listen: str, web_config: WebConfigWatcher | None = None) -> None:
        self.app, self.listen, self.web_config = app, listen, web_config
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="http", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._stop = asyncio.Event()
        try:
            runner = loop.run_until_complete(start_server(self.app, self.listen, self.web_config))
        except BaseException as exc:  # handed to start(): a bad address is the caller's one-line error
            ready.set_exception(exc)
            loop.close()
            return
        self.loop = loop
        ready.set_result(None)
        try:
            loop.run_until_complete(self._stop.wait())
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(runner.cleanup())
            loop.close()

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop listening; waits at most ``timeout`` (a daemon thread never holds the exit)."""
        loop, stop, thread = self.loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, timeout)
