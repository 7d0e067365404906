"""A test-only exporter whose single node churns at a rate the test sets while it runs.

It serves the real exporter app (``build_app``) over a ``Hub`` fed in wall-clock time by a
``SyntheticNode`` whose snapshot times are real (so freshness and stale checks read true), and adds
``POST /churn?value=X`` to change the churn share on the fly: 0 freezes the connection and DHT
population (no opens, no closes), 0.3 replaces a sizeable share of it every step.

    python -m tests.support.churn_feeder --web.listen-address 127.0.0.1:PORT --churn 0.3
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

from exporter.app.flags import add_serving_flags, settings_from_args, setup_logging
from exporter.app.runtime import add_live_metrics, hub_for
from exporter.generator import SyntheticNode
from exporter.pipeline.session import SessionStats
from exporter.server import build_app, start_server
from exporter.sinks.otel.install import install_tracing
from exporter.sources.governor import Governor


async def run(args: argparse.Namespace) -> None:
    settings = settings_from_args(args)
    hub = hub_for(settings.limits)  # the serving flags' label caps, --histograms.profile and .native
    tracing = install_tracing(hub, settings.tracing)  # spans (and exemplars) when --otlp.endpoint is given
    interval_ms = int(args.interval * 1000)
    gen = SyntheticNode(
        connections=args.connections,
        churn=args.churn,
        seed=args.seed,
        start_ms=int(time.time() * 1000),
        interval_ms=interval_ms,
        retention_ms=max(4 * interval_ms, 2000),
        peerstore=True,
        peerstore_leak=args.peerstore_leak,
    )
    for msg in (gen.runtime(), gen.config_response(), gen.state()):
        hub.ingest(args.node, msg)
    # A live session's own series (the interval asked and agreed, what was shed) and the ingest
    # governor's fleet-wide ones, as a live exporter at ease shows them: the exporter-health panels
    # that draw them have data here too.
    add_live_metrics(hub)
    hub.node(args.node).session = SessionStats(
        url="synthetic:",
        state="streaming",
        established=1,
        requested_interval_ms=interval_ms,
        effective_interval_ms=interval_ms,
        effective_retention_ms=gen.retention_ms,
    )
    hub.add_global_writer(Governor(lambda: []).write_metrics)

    async def set_churn(request: web.Request) -> web.Response:
        try:
            value = float(request.query["value"])
        except (KeyError, ValueError):
            return web.Response(status=400, text="want ?value=<float>\n")
        gen.churn = value
        return web.Response(text=f"churn {value}\n")

    async def get_churn(_: web.Request) -> web.Response:
        return web.Response(text=f"{gen.churn}\n")

    app = build_app(hub, args.telemetry_path, [("POST", "/churn", set_churn), ("GET", "/churn", get_churn)])
    runner = await start_server(app, args.listen)
    print(f"churn feeder on http://{args.listen}", flush=True)
    try:
        while True:
            await asyncio.sleep(args.interval)
            # The generator keeps its own clock; pin it to the wall clock so snapshot times are current.
            gen.now = int(time.time() * 1000) - interval_ms
            gen.step()
            for msg in gen.pending_events:
                hub.ingest(args.node, msg)
            gen.pending_events.clear()
            hub.ingest(args.node, gen.state())
    finally:
        await runner.cleanup()
        tracing.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", default="churny")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--churn", type=float, default=0.3)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between snapshots")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--peerstore-leak", type=int, default=0, help="peers added to the peerstore per step")
    add_serving_flags(ap)
    args = ap.parse_args()
    setup_logging(args.log_level)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
