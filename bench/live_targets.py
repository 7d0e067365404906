"""Live-targets benchmark: the exporter watching N synthetic nodes over loopback WebSockets.

Three processes: a loopback server holding N ``SyntheticNode``s (each pushing one State per
interval plus its events), the exporter in live mode with one ``--target`` per node, and this
script, which scrapes ``/metrics`` on a schedule and samples the exporter's CPU time and RSS from
/proc. Results: CPU share of one core, RSS (end and peak), and the scrape durations.

    python bench/live_targets.py --targets 100 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# -- the server side (runs as `live_targets.py serve`) --------------------------------------------
async def serve(nodes: int, port: int, connections: int) -> None:
    from aiohttp import WSMsgType, web

    from exporter.generator import SyntheticNode
    from exporter.protocol import introspection_pb2 as pb
    from exporter.protocol.commands import response
    from exporter.protocol.framing import encode_segment

    async def handle(request: web.Request) -> web.WebSocketResponse:
        i = int(request.match_info["i"])
        node = SyntheticNode(connections=connections, seed=1000 + i, start_ms=int(time.time() * 1000))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        interval = 1.0
        pusher: asyncio.Task[None] | None = None

        async def push() -> None:
            while not ws.closed:
                await asyncio.sleep(interval)
                node.step()
                msgs = [*node.pending_events, node.state()]
                node.pending_events.clear()
                await ws.send_bytes(b"".join(encode_segment(m) for m in msgs))

        async for frame in ws:
            if frame.type != WSMsgType.BINARY:
                continue
            cmd = pb.ClientCommand.FromString(frame.data)
            C = pb.ClientCommand
            if cmd.command == C.HELLO:
                interval = max(0.5, (cmd.config.state_snapshot_interval_ms or 1000) / 1000)
                cfg = pb.Configuration(retention_period_ms=120000, state_snapshot_interval_ms=int(interval * 1000))
                await ws.send_bytes(encode_segment(response(cmd.id, config=cfg)))
            elif cmd.command == C.REQUEST and cmd.source == C.RUNTIME:
                await ws.send_bytes(encode_segment(node.runtime()))
            elif cmd.command == C.PUSH_ENABLE:
                if cmd.source == C.STATE and pusher is None:
                    pusher = asyncio.create_task(push())
                await ws.send_bytes(encode_segment(response(cmd.id)))
        if pusher is not None:
            pusher.cancel()
        return ws

    app = web.Application()
    app.router.add_get("/n/{i}/introspect", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# -- measuring ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    vals = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}
    return vals["VmRSS"] / 1024, vals["VmHWM"] / 1024


def scrape(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    return time.perf_counter() - started, len(body)


def wait_up(url: str, targets: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            if body.count("libp2p_exporter_up{") >= targets and " 0.0\n" not in "".join(
                line + "\n" for line in body.splitlines() if line.startswith("libp2p_exporter_up{")
            ):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"not all {targets} targets came up within {timeout}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    sp = sub.add_parser("serve")
    sp.add_argument("--nodes", type=int, required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--connections", type=int, default=50)
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--connections", type=int, default=50, help="connections per synthetic node")
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--scrape-every", type=float, default=5.0)
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    if args.cmd == "serve":
        asyncio.run(serve(args.nodes, args.port, args.connections))
        return

    sport, eport = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "serve",
            "--nodes",
            str(args.targets),
            "--port",
            str(sport),
            "--connections",
            str(args.connections),
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert server.stdout is not None
    server.stdout.readline()
    targets = [f"--target=n{i:03d}=ws://127.0.0.1:{sport}/n/{i}/introspect" for i in range(args.targets)]
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            *targets,
            "--web.listen-address",
            f"127.0.0.1:{eport}",
            "--log.level",
            "warn",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{eport}/metrics"
    try:
        wait_up(url, args.targets, 60)
        time.sleep(args.warmup)
        cpu0, t0 = cpu_seconds(exporter.pid), time.monotonic()
        durations: list[float] = []
        size = 0
        rss_samples: list[float] = []
        while time.monotonic() - t0 < args.seconds:
            d, size = scrape(url)
            durations.append(d)
            rss_samples.append(rss_mib(exporter.pid)[0])
            time.sleep(max(0.0, args.scrape_every - d))
        cpu1, t1 = cpu_seconds(exporter.pid), time.monotonic()
        rss, peak = rss_mib(exporter.pid)
        probe_url = f"http://127.0.0.1:{eport}/probe?target=ws://127.0.0.1:{sport}/n/7/introspect"
        probes = [scrape(probe_url)[0] for _ in range(20)]
        body = urllib.request.urlopen(url, timeout=30).read().decode()
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        states = sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("libp2p_exporter_snapshots_total{")
        )
        dropped = sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("libp2p_exporter_session_dropped_messages_total{")
        )
        result = {
            "targets": args.targets,
            "connections_per_node": args.connections,
            "window_s": round(t1 - t0, 1),
            "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "rss_mib": round(rss, 1),
            "rss_peak_mib": round(peak, 1),
            "rss_min_max_in_window_mib": [round(min(rss_samples), 1), round(max(rss_samples), 1)],
            "scrapes": len(durations),
            "scrape_median_s": round(statistics.median(durations), 3),
            "scrape_max_s": round(max(durations), 3),
            "exposition_bytes": size,
            "probe_one_target_median_s": round(statistics.median(probes), 4),
            "probe_one_target_max_s": round(max(probes), 4),
            "load_average_1m_at_end": os.getloadavg()[0],
            "series": series,
            "states_accepted_total": int(states),
            "messages_dropped": int(dropped),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        for proc in (exporter, server):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
