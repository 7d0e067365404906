"""The application's runtime: a hub wired for a mode, and serving /metrics until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import TYPE_CHECKING, Any

from exporter import __version__
from exporter.app.gc_pacer import GcPacer
from exporter.app.pubsub import PubsubWiring, wire_pubsub
from exporter.mappers import standard_mappers
from exporter.mappers.session import SessionMetrics
from exporter.model.histogram_profiles import HistogramProfile, profile
from exporter.model.labels import Cardinality
from exporter.model.native import NativeSpec
from exporter.pipeline.hub import Hub
from exporter.server import Handler, HttpThread, build_app
from exporter.settings import Limits, Settings
from exporter.sinks.otel.install import TracingHandle, install_tracing
from exporter.sinks.scrape_journal import ScrapeJournal
from exporter.sources.pubsub_recording import TraceRecorder
from exporter.web_config import WebConfigError, WebConfigWatcher

if TYPE_CHECKING:
    from signal import _HANDLER as _Handler  # what signal.signal returns and takes

log = logging.getLogger("libp2p-exporter")

# How long a thread may hold the interpreter while another waits for it (Python's default: 5 ms).
# The HTTP thread waits that long at each step of a request behind a busy ingest loop; 1 ms keeps
# /healthz and /probe short, for a switch or two more per millisecond of ingest.
SWITCH_INTERVAL_S = 0.001
STOP_GRACE_S = 4.0  # after SIGINT/SIGTERM, the clean shutdown gets this long before the process exits anyway
# ... and if the interpreter is held past that (a long C call: the timer thread cannot run Python),
# faulthandler's watchdog, a C thread that needs no interpreter, ends it this much later.
HARD_STOP_EXTRA_S = 0.7


class Stopper:
    """SIGINT/SIGTERM: ask the loop to stop cleanly, and exit within ``STOP_GRACE_S`` regardless.

    Why a plain signal handler and a timer thread: under overload the loop may be busy (a scrape
    rendering on a worker thread, sessions draining), and asyncio's handlers only run when the loop
    gets to them; the interpreter's own exit also waits for worker threads. A second signal exits at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event, grace_s: float = STOP_GRACE_S) -> None:
        self.loop, self.stop, self.grace_s = loop, stop, grace_s
        self.timer: threading.Timer | None = None
        self._quiet: Any = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.timer is not None:  # asked twice: no more waiting
            os.write(2, b"libp2p-exporter: second signal, exiting now\n")
            os._exit(0)
        self.timer = threading.Timer(self.grace_s, self._expired)
        self.timer.daemon = True
        self.timer.start()
        # Measured: at 2,000-4,000 nodes the SIGTERM exit was sometimes over 5 s with the timer alone.
        # The watchdog's traceback dump goes nowhere (a slow exit is not worth one in the log).
        self._quiet = open(os.devnull, "w")  # noqa: SIM115 - kept open until the process ends
        faulthandler.dump_traceback_later(self.grace_s + HARD_STOP_EXTRA_S, exit=True, file=self._quiet)
        self.loop.call_soon_threadsafe(self.stop.set)

    def _expired(self) -> None:
        log.warning("shutdown took over %.0fs; exiting without waiting for the rest", self.grace_s)
        sys.stderr.flush()
        os._exit(0)

    def install(self) -> dict[signal.Signals, _Handler]:
        """Install for SIGINT and SIGTERM; the previous handlers, to restore."""
        previous: dict[signal.Signals, _Handler] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):  # not the main thread: no signals here
                previous[sig] = signal.signal(sig, self)
        return previous


def build_hub(cardinality: Cardinality | None = None, *, live: bool = False) -> Hub:
    """A hub with the standard mappers (what replaying a file needs), plus the session metrics when
    ``live`` sessions feed it."""
    cardinality = cardinality or Cardinality()
    hub = Hub(standard_mappers(cardinality), cardinality)
    if live:
        add_live_metrics(hub)
    return hub


def cardinality_of(limits: Limits, histograms: HistogramProfile | None = None) -> Cardinality:
    """The label caps and series budget of ``limits``; ``histograms``, when given, replaces the
    profile ``limits`` names (live mode's merged profile, with the config file's overrides)."""
    return Cardinality(
        protocol_cap=limits.protocol_cap,
        other_cap=limits.other_cap,
        agent_version_cap=limits.agent_version_cap,
        series_per_family=limits.series_per_family,
        series_per_node=limits.series_per_node,
        histograms=(histograms or profile(limits.histograms_profile)).with_native(
            NativeSpec.of(limits.native_histograms)
        ),
    )


def hub_for(limits: Limits, histograms: HistogramProfile | None = None) -> Hub:
    """The standard hub with the label caps and histogram profile of ``limits`` (see ``cardinality_of``)."""
    cardinality = cardinality_of(limits, histograms)
    warn_histograms(cardinality.histograms)
    return build_hub(cardinality)


def warn_histograms(histograms: HistogramProfile) -> None:
    """Say at start-up which shipped rule or panel a custom layout leaves without data."""
    for problem in histograms.warnings():
        log.warning("histograms: %s", problem)


def add_live_metrics(hub: Hub) -> None:
    """What a hub fed by live sessions exports besides the standard mappers (after tracing's)."""
    hub.add_mapper(SessionMetrics(hub.cardinality))


async def serve_until_stopped(
    hub: Hub,
    settings: Settings,
    work: Callable[[], Coroutine[Any, Any, object]] | None = None,
    *,
    description: str = "",
    duration: float | None = None,
    extra_routes: list[tuple[str, str, Handler]] | None = None,
    live: bool = False,
    pubsub: PubsubWiring | None = None,
    journal: ScrapeJournal | None = None,
    trace_recorder: TraceRecorder | None = None,
) -> int:
    """Serve /metrics, run ``work`` beside it, and stop on SIGINT/SIGTERM (or after ``duration``).

    Tracing is installed here when the settings or the environment ask for it; ``live`` hubs get the
    session metrics too, after tracing's (the order of families in the exposition). Pubsub traces
    are wired from the settings unless the caller already did (``pubsub``, the demo), and started
    (files read, collector running) before ``work``.
    """
    serving = settings.serving
    try:
        app = build_app(
            hub,
            serving.telemetry_path,
            extra_routes=extra_routes,
            description=description,
            on_scrape=journal.scraped if journal is not None else None,
        )
    except ValueError as exc:
        log.error("--web.telemetry-path: %s", exc)
        return 2
    web_config = None
    if serving.web_config_file:
        try:  # checked whole before anything starts: a broken file is one line and exit 2
            web_config = WebConfigWatcher(serving.web_config_file)
        except WebConfigError as exc:
            log.error("%s", exc)
            return 2
        hub.add_global_writer(web_config.certificates.write_metrics)  # the TLS certificates' expiry
    tracing: TracingHandle = install_tracing(hub, settings.tracing)  # OTLP spans, when an endpoint is configured
    if live:
        add_live_metrics(hub)
    if pubsub is None:
        pubsub = wire_pubsub(hub, settings.pubsub, settings.tracing)
    if pubsub is not None:
        if journal is not None:
            journal.extra = pubsub.journal_fields  # the collector's streams, scrape by scrape
        pubsub.recorder = trace_recorder
        await pubsub.start(settings.pubsub)
    http = HttpThread(app, serving.listen, web_config)  # its own loop: answers however busy ingest is
    try:
        await http.start()
    except (OSError, ValueError) as exc:
        log.error("cannot listen on %s: %s", serving.listen, getattr(exc, "strerror", None) or exc)
        if pubsub is not None:
            await pubsub.stop()
        return 2
    scheme = "https" if web_config is not None and web_config.config.tls is not None else "http"
    print(f"libp2p-exporter {__version__}: metrics at {scheme}://{serving.listen}{serving.telemetry_path}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    previous = Stopper(loop, stop).install()
    pacer = GcPacer()  # automatic collection off while serving: why in app/gc_pacer.py
    hub.add_global_writer(pacer.write)
    pacer.start()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
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
        await http.stop()
        await pacer.stop()
        if pubsub is not None:
            await pubsub.stop()
        if journal is not None:
            journal.close()
        await loop.run_in_executor(None, tracing.shutdown)
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler)
    return 0
