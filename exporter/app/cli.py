"""Command line: ``libp2p-exporter [replay|inspect|generate|demo|backfill|live|check-config] ...``.

Live mode is the default command: arguments that start with a flag go there (``live.default_to_live``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from exporter import __version__
from exporter.app import backfill, demo, live
from exporter.app.flags import add_serving_flags, setup_logging
from exporter.app.runtime import hub_from_args, serve_until_stopped
from exporter.generator import SyntheticNode
from exporter.sources.capture import CaptureError, CaptureWriter, format_summary, summarize
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
    node = SyntheticNode(
        connections=args.connections,
        streams_per_conn=args.streams,
        buckets=args.buckets,
        churn=args.churn,
        seed=args.seed,
        peerstore=True,
    )
    with CaptureWriter(args.file) as writer:
        for msg in node.messages(args.steps):
            writer.write(msg)
    print(f"wrote {writer.messages} messages ({writer.bytes_written} bytes) to {args.file}")
    return 0


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
    add_serving_flags(p)
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

    demo.add_parser(sub)
    backfill.add_parser(sub)
    live.add_parsers(sub)  # live (the default command) and check-config
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(live.default_to_live(list(sys.argv[1:] if argv is None else argv)))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    setup_logging(getattr(args, "log_level", None) or "info", getattr(args, "log_format", "logfmt"))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
