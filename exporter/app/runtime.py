"""The application's runtime: a hub wired for a mode, and serving /metrics until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from exporter import __version__, defaults
from exporter.mappers import standard_mappers
from exporter.mappers.session import SessionMetrics
from exporter.model.labels import Cardinality
from exporter.pipeline.hub import Hub
from exporter.server import Handler, build_app, start_server
from exporter.sinks.otel.install import install_tracing
from exporter.sinks.otel.sink import TracingHandle
from exporter.web_config import WebConfigError, WebConfigWatcher

log = logging.getLogger("libp2p-exporter")


def build_hub(cardinality: Cardinality | None = None, *, live: bool = False) -> Hub:
    """A hub with the standard mappers (what replaying a file needs), plus the session metrics when
    ``live`` sessions feed it."""
    cardinality = cardinality or Cardinality()
    hub = Hub(standard_mappers(cardinality), cardinality)
    if live:
        add_live_metrics(hub)
    return hub


def hub_from_args(args: argparse.Namespace) -> Hub:
    """The standard hub with the label caps the serving flags give (the defaults when absent)."""
    return build_hub(
        Cardinality(
            protocol_cap=getattr(args, "protocol_cap", defaults.PROTOCOL_CAP),
            other_cap=getattr(args, "other_cap", defaults.OTHER_CAP),
        )
    )


def add_live_metrics(hub: Hub) -> None:
    """What a hub fed by live sessions exports besides the standard mappers (after tracing's)."""
    hub.add_mapper(SessionMetrics(hub.cardinality))


async def serve_until_stopped(
    hub: Hub,
    args: argparse.Namespace,
    work: Callable[[], Awaitable[object]] | None = None,
    *,
    description: str = "",
    duration: float | None = None,
    extra_routes: list[tuple[str, str, Handler]] | None = None,
    live: bool = False,
) -> int:
    """Serve /metrics, run ``work`` beside it, and stop on SIGINT/SIGTERM (or after ``duration``).

    Tracing is installed here when the flags or the environment ask for it; ``live`` hubs get the
    session metrics too, after tracing's (the order of families in the exposition).
    """
    try:
        app = build_app(hub, args.telemetry_path, extra_routes=extra_routes, description=description)
    except ValueError as exc:
        log.error("--web.telemetry-path: %s", exc)
        return 2
    web_config = None
    if getattr(args, "web_config_file", None):
        try:  # checked whole before anything starts: a broken file is one line and exit 2
            web_config = WebConfigWatcher(args.web_config_file)
        except WebConfigError as exc:
            log.error("%s", exc)
            return 2
    tracing: TracingHandle = install_tracing(hub, args)  # OTLP spans, when an endpoint is configured
    if live:
        add_live_metrics(hub)
    try:
        runner = await start_server(app, args.listen, web_config)
    except (OSError, ValueError) as exc:
        log.error("cannot listen on %s: %s", args.listen, getattr(exc, "strerror", None) or exc)
        return 2
    scheme = "https" if web_config is not None and web_config.config.tls is not None else "http"
    print(f"libp2p-exporter {__version__}: metrics at {scheme}://{args.listen}{args.telemetry_path}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(work()) if work is not None else None
    try:
        if duration is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        else:
            await stop.wait()
    finally:
        if task is not None:
            if task.done() and task.exception() is not None:
                log.error("source failed: %s", task.exception())
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await runner.cleanup()
        await loop.run_in_executor(None, tracing.shutdown)
    return 0
