"""The HTTP face: /metrics, /healthz and a landing page (aiohttp).

Other routes (such as /probe for live targets) are added by the sources that need them through
``extra_routes``; the server itself only knows the hub.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter import __version__
from exporter.defaults import LISTEN_ADDRESS, TELEMETRY_PATH
from exporter.pipeline.hub import Hub
from exporter.sinks.prometheus import Exposition

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The app's exposition (per-node blocks cached between scrapes), shared by /metrics and /probe.
EXPOSITION = web.AppKey("exposition", Exposition)


async def serve_exposition(request: web.Request, node: str | None = None) -> web.Response:
    """The whole exposition, or one node's part (``/probe``), rendered off the event loop.

    Format by ``Accept`` (OpenMetrics or text), gzip when ``Accept-Encoding`` allows it.
    """
    exposition = request.app[EXPOSITION]
    accept = request.headers.get("Accept", "")
    encoding = request.headers.get("Accept-Encoding", "")
    loop = asyncio.get_running_loop()
    body, headers = await loop.run_in_executor(None, exposition.respond, accept, encoding, node)
    return web.Response(body=body, headers=headers)


def parse_listen(address: str) -> tuple[str, int]:
    """``host:port``, ``:port`` (all interfaces) or ``[v6]:port``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {address!r} is not host:port")
    if int(port) > 65535:
        raise ValueError(f"listen address {address!r}: port {port} is out of range (0-65535)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def build_app(
    hub: Hub,
    telemetry_path: str = TELEMETRY_PATH,
    extra_routes: list[tuple[str, str, Handler]] | None = None,
    description: str = "",
) -> web.Application:
    reserved = {"/", "/healthz", *(path for _, path, _ in extra_routes or [])}
    if not telemetry_path.startswith("/") or telemetry_path in reserved:
        raise ValueError(
            f"telemetry path {telemetry_path!r} must start with / and differ from {', '.join(sorted(reserved))}"
        )
    app = web.Application()
    app[EXPOSITION] = Exposition(hub)

    async def metrics(request: web.Request) -> web.Response:
        return await serve_exposition(request)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def index(_: web.Request) -> web.Response:
        rows = []
        for node in sorted(hub.nodes.values(), key=lambda n: n.name):
            rt = node.runtime
            who = f"{rt.implementation} {rt.version}, peer {rt.peer_id}" if rt else "no runtime yet"
            snap = node.snapshot
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


async def start_server(app: web.Application, listen: str = LISTEN_ADDRESS) -> web.AppRunner:
    host, port = parse_listen(listen)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)  # a stop must not wait on slow scrapes
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("serving metrics on http://%s:%d", host, port)
    return runner
