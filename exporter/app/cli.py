"""Command line: ``libp2p-exporter [replay|inspect|generate|demo|backfill|live|check-config] ...``.

Live mode is the default command: arguments that start with a flag go there (``live.default_to_live``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from exporter import __version__
from exporter.app import backfill, demo, live
from exporter.app.argtypes import Parser, fail, join_negative_values, non_negative_float, non_negative_int
from exporter.app.flags import add_serving_flags, settings_from_args, setup_logging
from exporter.app.runtime import hub_for, serve_until_stopped
from exporter.generator import SyntheticNode
from exporter.protocol.framing import SegmentError
from exporter.settings import Serving
from exporter.sources.capture import CaptureError, CaptureWriter, format_summary, iter_capture, summarize
from exporter.sources.replay import replay

log = logging.getLogger("libp2p-exporter")


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        summary = summarize(args.file)
    except CaptureError as exc:
        print(f"libp2p-exporter inspect: {exc}", file=sys.stderr)
        return 1
    print(format_summary(args.file, summary))
    return 0 if summary.total else 1


def cmd_replay(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    max_segment = settings.limits.max_segment_bytes
    problem = replay_problem(args.file, max_segment)
    if problem:
        return fail("libp2p-exporter replay", problem, 1)
    hub = hub_for(settings.limits)
    node = args.node or Path(args.file).name.split(".")[0]

    async def work() -> None:
        try:
            passes = await replay(hub, args.file, node=node, speed=args.speed, loop=args.loop, max_segment=max_segment)
            log.info("replay of %s finished after %d pass(es); serving the final state", args.file, passes)
        except CaptureError as exc:
            log.error("%s", exc)

    return asyncio.run(serve_until_stopped(hub, settings, work, description=f"replaying {args.file}"))


def replay_problem(path: str, max_segment: int) -> str | None:
    """Why ``path`` cannot be replayed (inspect's verdict), or None. A file with no readable message
    would otherwise be served forever as an empty exporter."""
    p = Path(path)
    if p.is_dir():
        return f"{path} is a directory, not a capture file"
    if not p.exists():
        return f"no such file: {path}"
    try:
        for item in iter_capture(path, max_segment=max_segment):
            if not isinstance(item, SegmentError):
                return None
    except CaptureError as exc:
        return str(exc)
    return f"{path}: no readable message in it (libp2p-exporter inspect {path} says why)"


def cmd_generate(args: argparse.Namespace) -> int:
    node = SyntheticNode(
        connections=args.connections,
        streams_per_conn=args.streams,
        buckets=args.buckets,
        churn=args.churn,
        seed=args.seed,
        peerstore=True,
    )
    try:
        with CaptureWriter(args.file) as writer:
            for msg in node.messages(args.steps):
                writer.write(msg)
    except OSError as exc:
        return fail("libp2p-exporter generate", f"cannot write {args.file}: {exc.strerror or exc}", 1)
    print(f"wrote {writer.messages} messages ({writer.bytes_written} bytes) to {args.file}")
    return 0


class _TopParser(Parser):
    """The top-level parser. Flags given without a command go to live (``live.default_to_live``), so
    its help ends with live's own: the flags a bare ``libp2p-exporter --target …`` takes."""

    default_command: argparse.ArgumentParser | None = None

    def format_help(self) -> str:
        text = super().format_help()
        if self.default_command is None:
            return text
        return (
            f"{text}\nlive is the default command: flags given without a command are live's, as follows.\n\n"
            f"{self.default_command.format_help()}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _TopParser(
        prog="libp2p-exporter", description="Export libp2p introspection snapshots as Prometheus metrics."
    )
    parser.add_argument("--version", action="version", version=f"libp2p-exporter {__version__}")
    # What a command without the serving flags (inspect, generate) leaves in the namespace.
    parser.set_defaults(func=None, log_level=None, log_format=Serving().log_format)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    p = sub.add_parser("inspect", help="summarise a capture file (.mock / .libp2p.trace)")
    p.add_argument("file")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("replay", help="serve /metrics while replaying a capture file")
    p.add_argument("file")
    p.add_argument(
        "--speed", type=non_negative_float, default=1.0, help="1 = recorded pace (default), 0 = as fast as possible"
    )
    p.add_argument("--loop", action="store_true", help="start again at the end; counters keep counting")
    p.add_argument("--node", default="", help="node label (default: the file name up to its first dot)")
    add_serving_flags(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("generate", help="write a synthetic capture file")
    p.add_argument("file")
    p.add_argument("--connections", type=non_negative_int, default=50)
    p.add_argument("--streams", type=non_negative_int, default=3, help="streams per connection")
    p.add_argument("--buckets", type=non_negative_int, default=8, help="DHT buckets")
    p.add_argument("--churn", type=non_negative_float, default=0.1, help="share of things that change per step")
    p.add_argument("--steps", type=non_negative_int, default=60, help="snapshots after the first")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_generate)

    demo.add_parser(sub)
    backfill.add_parser(sub)
    parser.default_command = live.add_parsers(sub)  # live (the default command) and check-config
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(live.default_to_live(list(sys.argv[1:] if argv is None else argv))))
    if args.func is None:
        parser.print_help()
        return 2
    setup_logging(args.log_level or Serving().log_level, args.log_format)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader stopped early (`| head`): no traceback. Later writes, and the interpreter's
        # final flush, go to /dev/null so they do not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
