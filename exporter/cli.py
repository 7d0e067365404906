"""Command line: ``libp2p-exporter [replay|inspect|generate|demo] ...``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from exporter import __version__
from exporter.labels import Cardinality
from exporter.logs import LEVELS
from exporter.logs import add_format_flag as add_log_format_flag
from exporter.logs import configure as configure_logging
from exporter.node import Hub
from exporter.protocol.framing import DEFAULT_MAX_SEGMENT
from exporter.server import DEFAULT_LISTEN, Handler, build_app, start_server
from exporter.sinks.otel import add_otel_flags, install_tracing
from exporter.web_config import WebConfigError, WebConfigWatcher
from exporter.web_config import add_flag as add_web_config_flag

log = logging.getLogger("libp2p-exporter")


def add_web_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        default=DEFAULT_LISTEN,
        help=f"address to serve metrics on (default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--web.telemetry-path", dest="telemetry_path", default="/metrics", help="metrics path (default /metrics)"
    )
    p.add_argument(
        "--labels.protocol-cap",
        dest="protocol_cap",
        type=int,
        default=32,
        help="protocol ids beyond the known list that may become label values before the rest is 'other' (default 32)",
    )
    p.add_argument(
        "--labels.other-cap",
        dest="other_cap",
        type=int,
        default=8,
        help="the same cap for security, muxer and event type names (default 8)",
    )
    p.add_argument(
        "--protocol.max-segment-bytes",
        dest="max_segment",
        type=int,
        default=DEFAULT_MAX_SEGMENT,
        help=f"largest segment accepted; longer lengths are errors, never allocations (default {DEFAULT_MAX_SEGMENT})",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=["debug", "info", "warn", "error"],
        help="log level (default info)",
    )
    add_log_format_flag(p)
    add_web_config_flag(p)


def hub_from_args(args: argparse.Namespace) -> Hub:
    return Hub(cardinality=Cardinality(protocol_cap=args.protocol_cap, other_cap=args.other_cap))


def setup_logging(level: str, fmt: str = "logfmt") -> None:
    configure_logging(level if level in LEVELS else "info", fmt)


async def serve_until_stopped(
    hub: Hub,
    args: argparse.Namespace,
    work: Callable[[], Awaitable[object]] | None = None,
    *,
    description: str = "",
    duration: float | None = None,
    extra_routes: list[tuple[str, str, Handler]] | None = None,
) -> int:
    """Serve /metrics, run ``work`` beside it, and stop on SIGINT/SIGTERM (or after ``duration``)."""
    try:
        app = build_app(hub, args.telemetry_path, extra_routes=extra_routes, description=description)
    except ValueError as exc:
        log.error("--web.telemetry-path: %s", exc)
        return 2
    web_config = None
    if getattr(args, "web_config_file", None):
        try:
            web_config = WebConfigWatcher(args.web_config_file)
        except WebConfigError as exc:
            log.error("%s", exc)
            return 2
    tracing = install_tracing(hub, args)  # OTLP spans, when an endpoint is configured
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


def cmd_inspect(args: argparse.Namespace) -> int:
    from exporter.sources.capture import CaptureError, format_summary, summarize

    try:
        summary = summarize(args.file)
    except CaptureError as exc:
        print(f"libp2p-exporter inspect: {exc}", file=sys.stderr)
        return 1
    print(format_summary(args.file, summary))
    return 0 if summary.total else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from exporter.sources.capture import CaptureError
    from exporter.sources.replay import replay

    if not Path(args.file).is_file():
        print(f"libp2p-exporter replay: no such file: {args.file}", file=sys.stderr)
        return 1
    hub = hub_from_args(args)
    node = args.node or Path(args.file).name.split(".")[0]

    async def work() -> None:
        try:
            passes = await replay(
                hub, args.file, node=node, speed=args.speed, loop=args.loop, max_segment=args.max_segment
            )
            log.info("replay of %s finished after %d pass(es); serving the final state", args.file, passes)
        except CaptureError as exc:
            log.error("%s", exc)

    return asyncio.run(serve_until_stopped(hub, args, work, description=f"replaying {args.file}"))


def cmd_generate(args: argparse.Namespace) -> int:
    from exporter.generator import SyntheticNode
    from exporter.sources.capture import CaptureWriter

    node = SyntheticNode(
        connections=args.connections,
        streams_per_conn=args.streams,
        buckets=args.buckets,
        churn=args.churn,
        seed=args.seed,
    )
    with CaptureWriter(args.file) as writer:
        for msg in node.messages(args.steps):
            writer.write(msg)
    print(f"wrote {writer.messages} messages ({writer.bytes_written} bytes) to {args.file}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from exporter.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="libp2p-exporter", description="Export libp2p introspection snapshots as Prometheus metrics."
    )
    parser.add_argument("--version", action="version", version=f"libp2p-exporter {__version__}")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("inspect", help="summarise a capture file (.mock / .libp2p.trace)")
    p.add_argument("file")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("replay", help="serve /metrics while replaying a capture file")
    p.add_argument("file")
    p.add_argument("--speed", type=float, default=1.0, help="1 = recorded pace (default), 0 = as fast as possible")
    p.add_argument("--loop", action="store_true", help="start again at the end; counters keep counting")
    p.add_argument("--node", default="", help="node label (default: the file name up to its first dot)")
    add_web_flags(p)
    add_otel_flags(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("generate", help="write a synthetic capture file")
    p.add_argument("file")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--streams", type=int, default=3, help="streams per connection")
    p.add_argument("--buckets", type=int, default=8, help="DHT buckets")
    p.add_argument("--churn", type=float, default=0.1, help="share of things that change per step")
    p.add_argument("--steps", type=int, default=60, help="snapshots after the first")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="run a local py-libp2p swarm, watch it over the wire, serve /metrics")
    p.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: run until Ctrl-C)"
    )
    from exporter.demo import add_demo_flags

    add_demo_flags(p)
    add_web_flags(p)
    add_otel_flags(p)
    p.set_defaults(func=cmd_demo)

    from exporter.sources.live_cli import add_parsers

    add_parsers(sub)  # live (the default command) and check-config
    return parser


def main(argv: list[str] | None = None) -> int:
    from exporter.sources.live_cli import default_to_live

    parser = build_parser()
    args = parser.parse_args(default_to_live(list(sys.argv[1:] if argv is None else argv)))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    setup_logging(getattr(args, "log_level", None) or "info", getattr(args, "log_format", "logfmt"))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
