"""Live mode on the command line: ``libp2p-exporter --target ws://…``, ``--config FILE``, ``/probe``,
and ``libp2p-exporter check-config FILE``.

Live mode is the default command: arguments that start with a flag go here (see ``default_to_live``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from exporter.app.argtypes import Parser, positive_float, positive_int
from exporter.app.config import LiveConfig, build, check_file, describe
from exporter.app.config_file import METRICS_NODES
from exporter.app.config_values import ENV_PREFIX, ConfigError, parse_duration, parse_size
from exporter.app.discovery import discovery_handler
from exporter.app.flags import add_serving_flags, log_level, settings_from_args
from exporter.app.probe import probe_handler
from exporter.app.reload import LiveState, reload_handler
from exporter.app.running_config import config_handler
from exporter.app.runtime import hub_for, serve_until_stopped
from exporter.model.histogram_profiles import profile
from exporter.server import on_home_loop
from exporter.settings import Ingest, Settings
from exporter.sinks.scrape_journal import ScrapeJournal
from exporter.sources.governor import GovernorOptions
from exporter.sources.manager import SessionManager
from exporter.sources.options import DEFAULT_INTERVAL_MS, DEFAULT_RETENTION_MS
from exporter.sources.pubsub_recording import TraceRecorder
from exporter.sources.recording import RotatingRecorder, record_dir_problem
from exporter.sources.sharding import parse_shard

log = logging.getLogger("libp2p-exporter")
FLEET_GROUP = "fleets (sharding, /discovery, reload; live mode only)"


def budget_share(text: str) -> float:
    """A CPU share in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share of one core in (0, 1]")
    return value


def duration_seconds(text: str) -> float:
    """A positive duration such as 30s or 2m, in seconds."""
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return value


def default_to_live(argv: list[str], env: dict[str, str] | os._Environ[str] | None = None) -> list[str]:
    """``libp2p-exporter --target …`` means ``libp2p-exporter live --target …``."""
    env = os.environ if env is None else env
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        return ["live", *argv]
    if not argv and (env.get(ENV_PREFIX + "TARGETS") or env.get(ENV_PREFIX + "CONFIG")):
        return ["live"]
    return argv


def add_parsers(sub: argparse._SubParsersAction[Parser]) -> argparse.ArgumentParser:
    """Register ``live`` (the default command) and ``check-config``; returns live's parser."""
    p = sub.add_parser(
        "live",
        help="watch live nodes over the introspection WebSocket (the default command)",
        description="Flags beat LIBP2P_EXPORTER_* environment variables, which beat the config file.",
    )
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="a node's ws://HOST:PORT/introspect endpoint; repeat for more (env LIBP2P_EXPORTER_TARGETS)",
    )
    p.add_argument("--config", default=None, help="YAML config file (env LIBP2P_EXPORTER_CONFIG)")
    p.add_argument(
        "--interval",
        default=None,
        help=f"snapshot interval to ask for, e.g. 1s (default {DEFAULT_INTERVAL_MS / 1000:g}s)",
    )
    p.add_argument(
        "--retention", default=None, help=f"retention to ask for, e.g. 120s (default {DEFAULT_RETENTION_MS / 1000:g}s)"
    )
    p.add_argument(
        "--stale-intervals",
        dest="stale_intervals",
        type=positive_float,
        default=None,
        help="stop exporting a node's data after this many intervals without a State (default 3)",
    )
    p.add_argument(
        "--record", dest="record_dir", default=None, metavar="DIR", help="record each target's stream under DIR"
    )
    p.add_argument(
        "--record.max-size", dest="record_max_size", default=None, help="rotate recordings at this size (default 64MiB)"
    )
    p.add_argument(
        "--record.max-age", dest="record_max_age", default=None, help="rotate recordings at this age (default 1h)"
    )
    p.add_argument(
        "--probe.idle-timeout",
        dest="probe_idle",
        default=None,
        help="close /probe sessions not probed for this long (default 5m)",
    )
    p.add_argument(
        "--probe.enable",
        dest="probe_enable",
        action="store_true",
        default=None,
        help="serve /probe?target=ws://… (off by default: it dials what it is told; see --probe.allow)",
    )
    p.add_argument(
        "--probe.allow",
        dest="probe_allow",
        action="append",
        default=[],
        metavar="REGEX",
        help="a regular expression a /probe target must fully match; repeat for more (implies --probe.enable)",
    )
    fleet = p.add_argument_group(FLEET_GROUP)
    fleet.add_argument(
        "--shard",
        default=None,
        metavar="N|POD",
        help="this replica's shard, a number or a StatefulSet pod name ending in -N (default 0; env LIBP2P_EXPORTER_SHARD)",
    )
    fleet.add_argument(
        "--total-shards",
        dest="total_shards",
        type=positive_int,
        default=None,
        help="replicas the targets are split across, by a stable hash of each name (default 1)",
    )
    fleet.add_argument(
        "--metrics.nodes",
        dest="metrics_nodes",
        choices=METRICS_NODES,
        default=None,
        help="'all': nodes' series on /metrics too; 'none': only through /probe and /discovery (default all)",
    )
    fleet.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="accept POST /-/reload (SIGHUP always reloads the config)",
    )
    fleet.add_argument(
        "--web.external-address",
        dest="external_address",
        default=None,
        metavar="HOST:PORT",
        help="the address /discovery hands Prometheus for this replica (default: the Host it was asked on)",
    )
    fleet.add_argument(
        "--ingest.budget",
        dest="ingest_budget",
        type=budget_share,
        default=None,
        help="share of one core the sessions' loop may use before every node is asked for fewer States "
        f"(default {Ingest.budget:g}; docs/live.md#overload)",
    )
    fleet.add_argument(
        "--ingest.max-interval",
        dest="ingest_max_interval",
        type=duration_seconds,
        default=None,
        help=f"the longest State interval ever asked (default: each node's retention / {Ingest.retention_margin:g}, "
        "narrowed to / 1.25 while every node is there and the exporter is still behind)",
    )
    fleet.add_argument(
        "--ingest.adaptive",
        dest="ingest_adaptive",
        choices=("on", "off"),
        default=None,
        help="'off': always ask for --interval; overload is then met by shedding alone (default on)",
    )
    add_serving_flags(p, from_config=True)  # the same flags as replay's, tracing included
    p.set_defaults(func=cmd_live)

    check = sub.add_parser("check-config", help="validate a live-mode config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)
    return p


def cmd_check_config(args: argparse.Namespace) -> int:
    ok, text = check_file(args.file)
    print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that live mode merges with the environment and the file (parsed; None: not given)."""
    out: dict[str, Any] = {
        "listen": args.listen,
        "telemetry_path": args.telemetry_path,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "web_config_file": args.web_config_file,
        "max_segment": args.max_segment,
        "stale_intervals": args.stale_intervals,
        "record_dir": args.record_dir,
        "probe_enable": args.probe_enable,
        "probe_allow": args.probe_allow or None,
        "histograms_profile": args.histograms_profile,
        "total_shards": args.total_shards,
        "metrics_nodes": args.metrics_nodes,
    }
    problems = []
    for key, flag, parse in (
        ("interval", "--interval", parse_duration),
        ("retention", "--retention", parse_duration),
        ("record_max_size", "--record.max-size", parse_size),
        ("record_max_age", "--record.max-age", parse_duration),
        ("probe_idle", "--probe.idle-timeout", parse_duration),
        ("shard", "--shard", parse_shard),
    ):
        raw = vars(args)[key]
        if raw is not None:
            try:
                out[key] = parse(raw)
            except ValueError as exc:
                problems.append(f"{flag}: {exc}")
    if problems:
        raise ConfigError(problems)
    return out


def cmd_live(args: argparse.Namespace) -> int:
    try:
        cfg = build(_flags(args), args.target, args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"libp2p-exporter: {problem}", file=sys.stderr)
        return 2
    if cfg.recording.dir:
        unusable = record_dir_problem(cfg.recording.dir)
        if unusable:
            print(f"libp2p-exporter: {unusable}", file=sys.stderr)
            return 2
    logging.getLogger().setLevel(log_level(cfg.serving.log_level))
    settings = settings_from_args(args)
    return asyncio.run(
        run_live(
            cfg,
            settings=settings,
            rebuild=lambda: build(_flags(args), args.target, args.config),
            external_address=args.external_address,
            enable_lifecycle=args.enable_lifecycle,
            ingest=ingest_from_args(args),
        )
    )


def ingest_from_args(args: argparse.Namespace) -> Ingest:
    """``--ingest.*`` as ``Ingest`` (validated by the flags' types); unset flags keep its defaults."""
    given = {
        "adaptive": None if args.ingest_adaptive is None else args.ingest_adaptive == "on",
        "budget": args.ingest_budget,
        "max_interval_s": args.ingest_max_interval,
    }
    return Ingest(**{k: v for k, v in given.items() if v is not None})


async def run_live(
    cfg: LiveConfig,
    *,
    duration: float | None = None,
    settings: Settings | None = None,
    rebuild: Callable[[], LiveConfig] | None = None,
    external_address: str | None = None,
    enable_lifecycle: bool = False,
    ingest: Ingest | None = None,
) -> int:
    """Watch ``cfg``'s targets and serve them. ``settings`` gives what only flags set (limits, tracing,
    pubsub traces); where and how to serve is the merged config's."""
    settings = replace(settings or Settings(), serving=cfg.serving)
    hub = hub_for(settings.limits, histograms=cfg.histograms)
    factory = None
    recording = cfg.recording
    if recording.dir:
        record_dir = recording.dir

        def factory(name: str) -> RotatingRecorder:
            return RotatingRecorder(record_dir, name, max_bytes=recording.max_bytes, max_age_s=recording.max_age_s)

    manager = SessionManager(
        hub,
        cfg.options,
        recorder_factory=factory,
        probe_idle_s=cfg.probe.idle_s,
        max_probe_sessions=cfg.probe.max_sessions,
        hide_nodes=cfg.metrics_nodes == "none",
        governor=GovernorOptions.of(ingest or Ingest()),
    )
    hub.add_global_writer(manager.governor.write_metrics)
    state = LiveState(cfg, manager, rebuild or (lambda: cfg))
    hub.add_global_writer(state.write_metrics)
    owned = cfg.owned_targets
    names = ", ".join(t.name for t in owned) or "none"
    if cfg.probe.enabled:
        allowed = " | ".join(cfg.probe.allow) or "any ws:// or wss:// target (restrict with --probe.allow)"
        log.info("/probe is on: %s", allowed)
    if cfg.shard.sharded:
        log.info("%s: %d of %d configured target(s)", cfg.shard, len(owned), len(cfg.targets))
    log.info("live mode: %d target(s): %s", len(owned), names)
    if not cfg.targets and not cfg.probe.enabled:
        log.warning(
            "no targets and /probe is off: /metrics has only the exporter's own series; give nodes with "
            "--target [NAME=]ws://HOST:PORT/introspect or --config FILE, or serve /probe with --probe.enable"
        )
    if cfg.histograms != profile():
        log.info("histograms: %s", describe(cfg.histograms))
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[tuple[bool, str]]] = set()

    def on_sighup() -> None:
        task = loop.create_task(state.reload("SIGHUP"), name="config reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    async def work() -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no signals off the main thread
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        try:
            await manager.run(owned)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)

    try:
        return await serve_until_stopped(
            hub,
            settings,
            work,
            description=f"watching {len(cfg.targets)} live target(s)",
            duration=duration,
            extra_routes=[
                ("GET", "/probe", probe_handler(hub, manager, state)),
                (
                    "GET",
                    "/discovery",
                    discovery_handler(
                        lambda: manager.current_targets(state.cfg.owned_targets),
                        lambda: state.cfg.shard,
                        external_address,
                    ),
                ),
                ("POST", "/-/reload", on_home_loop(reload_handler(state, enable_lifecycle))),
                (
                    "GET",
                    "/config",
                    config_handler(lambda: {"live": state.cfg, "ingest": ingest or Ingest(), "flags": settings}),
                ),
            ],
            live=True,
            journal=ScrapeJournal(recording.dir, max_bytes=recording.max_bytes) if recording.dir else None,
            trace_recorder=TraceRecorder(recording.dir, max_bytes=recording.max_bytes, max_age_s=recording.max_age_s)
            if recording.dir
            else None,
        )
    finally:
        await manager.close()
