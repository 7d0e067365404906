"""The HTTP face: /metrics, /healthz and a landing page (aiohttp).

Other routes (such as /probe for live targets) are added by the sources that need them through
``extra_routes``; the server itself only knows the hub.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter import __version__
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


async def serve_exposition(request: web.Request, node: str | None = None) -> web.Response:
    """The whole exposition, or one node's part (``/probe``), rendered off the event loop.

    Format by ``Accept`` (OpenMetrics or text), gzip when ``Accept-Encoding`` allows it.
    """
    exposition = request.app[EXPOSITION]
    accept = request.headers.get("Accept", "")
    encoding = request.headers.get("Accept-Encoding", "")
    loop = asyncio.get_running_loop()
    hook = request.app.get(SCRAPE_HOOK) if node is None else None
    if hook is None:
        body, headers = await loop.run_in_executor(None, exposition.respond, accept, encoding, node)
        return web.Response(body=body, headers=headers)
    arrived, started = time.time(), time.perf_counter()
    timeout = request.headers.get(TIMEOUT_HEADER)

    def respond() -> tuple[bytes, dict[str, str], float | None]:
        return (*exposition.respond(accept, encoding, None), exposition.reported_duration())

    try:
        body, headers, reported = await loop.run_in_executor(None, respond)
    except Exception:
        hook(arrived, timeout, time.perf_counter() - started, None)
        raise
    hook(arrived, timeout, time.perf_counter() - started, reported)
    return web.Response(body=body, headers=headers)


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

    async def metrics(request: web.Request) -> web.Response:
        return await serve_exposition(request)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def index(_: web.Request) -> web.Response:
        rows = []
        for node in sorted(hub.nodes.values(), key=lambda n: n.name):
            rt = node.runtime
            who = f"{rt.implementation} {rt.version}, peer {rt.peer_id}" if rt else "no runtime yet"
            snap = node.last_step
            conns = snap.open_conns if snap else 0
            state = "up" if node.fresh() else "down"
            rows.append(
                f"<tr><td>{html.escape(node.name)}</td><td>{state}</td><td>{html.escape(who)}</td>"
                f"<td>{conns}</td><td>{node.messages.get('state', 0)}</td></tr>"
            )
        body = (
            f"<html><head><title>libp2p-exporter</title></head><body><h1>libp2p-exporter {__version__}</h1>"
            f"<p>{html.escape(description)}</p>"
            f'<p><a href="{html.escape(telemetry_path)}">Metrics</a> · <a href="/healthz">Health</a></p>'
            "<table border=1><tr><th>node</th><th>state</th><th>runtime</th><th>open connections</th>"
            f"<th>states received</th></tr>{''.join(rows)}</table></body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    app.router.add_get("/", index)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/healthz", healthz)
    for method, path, handler in extra_routes or []:
        app.router.add_route(method, path, handler)
    return app


async def start_server(
    app: web.Application, listen: str = Serving.listen, web_config: WebConfigWatcher | None = None
) -> web.AppRunner:
    """Listen on ``listen``; with a web configuration, TLS and basic auth guard every path."""
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
