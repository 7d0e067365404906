"""Cost on a go-libp2p host: its CPU and allocations with introspection on (a client taking a State
every second) against off, at 50 and 500 connections.

    .venv/bin/python bench/go_host_cost.py --conns 50,500 --seconds 30 --json bench/results/go-host-cost.json

The measured host is ``producers/go/cmd/introspect-node``, alone in its process (TCP and QUIC on
127.0.0.1, the echo protocol ``/e2e/echo/1.0.0``, no kad-dht), in three modes:

- ``off``: the same host without the probe and without ``introspect.New`` (``-introspect=false``);
- ``installed``: the probe in ``libp2p.New`` and ``introspect.New`` with its endpoint, no client;
- ``on-1s``: as installed, with one client (this script) that says HELLO with a 1000 ms interval and
  PUSH_ENABLEs STATE and EVENTS, reading and discarding what comes (States counted, bytes summed).

Limits raised on the measured host, the same in every mode: the connection manager's water marks
(``-conns-high 1100``: low 990, high 1100, so it never trims; go-libp2p's default is 160/192) and the
resource manager's system and transient scopes (``-unlimited``: connections, inbound and outbound,
streams, inbound and outbound, and file descriptors unlimited; every other scope keeps go-libp2p's
auto-scaled defaults, and loopback is exempt from the per-subnet connection limits).

Peers: ``producers/go/cmd/loopback-peers`` processes of at most ``--per-process`` (125) hosts each,
every host dialling the measured host once over TCP (so N connections = N peers: 50 is one process
of 50, 500 four processes of 125) and opening one short echo stream to it every ``--streams-every``
(10 s, first after a random part of it). The peers neither listen nor introspect; their own metrics
are off.

Measured from the host's ``/runtime`` (getrusage of its process, ``runtime.ReadMemStats``) at the start
and end of a ``--seconds`` window after ``--warmup`` seconds: CPU (user + system) as cores, mallocs
and bytes allocated per second, heap in use and goroutines at the end. Modes and sizes run
interleaved, ``--reps`` times. Loopback only; every process is stopped with SIGTERM (SIGKILL after
5 s) at the end of its run.

The machine this runs on is shared: take figures on a quiet machine (the script records the load
average with every run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from exporter.protocol import introspection_pb2 as pb  # noqa: E402
from exporter.protocol.commands import command  # noqa: E402
from exporter.protocol.framing import decode_segments  # noqa: E402

GO_MODULE = REPO / "producers" / "go"
MODES = ("off", "installed", "on-1s")
CMD = pb.ClientCommand


def build(dest: Path) -> dict[str, Path]:
    go = shutil.which("go")
    if go is None:
        sys.exit("go is not on PATH")
    cmds = ("introspect-node", "loopback-peers")
    subprocess.run(
        [go, "build", "-o", str(dest) + "/", *(f"./cmd/{c}" for c in cmds)], cwd=GO_MODULE, check=True, timeout=900
    )
    return {c: dest / c for c in cmds}


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def first_json_line(proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]
        time.sleep(0.1)
    sys.exit(f"{what}: no ready line within {timeout} s:\n{log.read_text(errors='replace')[-2000:]}")


async def client(url: str, stats: dict[str, int], done: asyncio.Event) -> None:
    """The observer's handshake at a 1000 ms interval; everything read and discarded."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_bytes(command(1, CMD.HELLO, interval_ms=1000, retention_ms=120_000))
        await ws.send_bytes(command(2, CMD.PUSH_ENABLE, CMD.EVENTS))
        await ws.send_bytes(command(3, CMD.PUSH_ENABLE, CMD.STATE))
        while not done.is_set():
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.5)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise RuntimeError(f"the endpoint sent {msg.type}: {msg.data!r}")
            stats["messages"] += 1
            stats["bytes"] += len(msg.data)
            decoded = decode_segments(msg.data)
            if decoded.errors:
                raise RuntimeError(f"a damaged message from the endpoint: {decoded.errors}")
            stats["states"] += sum(m.WhichOneof("payload") == "state" for m in decoded.messages)


def one_run(tools: dict[str, Path], work: Path, mode: str, conns: int, args: argparse.Namespace) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        flags = ["-unlimited", "-conns-high", "1100", "-protocols", "/e2e/echo/1.0.0"]
        if mode == "off":
            flags.append("-introspect=false")
        log = work / "host.log"
        host = subprocess.Popen(
            [str(tools["introspect-node"]), *flags], stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        procs.append(host)
        info = first_json_line(host, log, "introspect-node", 30)
        target = next(a for a in info["addrs"] if "/tcp/" in a)
        left, i = conns, 0
        while left > 0:
            n = min(left, args.per_process)
            plog = work / f"peers-{i}.log"
            p = subprocess.Popen(
                [str(tools["loopback-peers"]), "-n", str(n), "-target", target, "-streams-every", args.streams_every],
                stdout=plog.open("wb"),
                stderr=subprocess.STDOUT,
            )
            procs.append(p)
            first_json_line(p, plog, f"loopback-peers {i}", 120)
            left, i = left - n, i + 1
        held = len(get_json(info["http"] + "/conns"))
        if held != conns:
            sys.exit(f"{mode} {conns}: the host holds {held} connections, not {conns}")

        async def measure() -> dict[str, Any]:
            stats = {"messages": 0, "bytes": 0, "states": 0}
            done = asyncio.Event()
            task = asyncio.create_task(client(info["introspect"], stats, done)) if mode == "on-1s" else None
            await asyncio.sleep(args.warmup)
            before, t0, s0 = get_json(info["http"] + "/runtime"), time.monotonic(), dict(stats)
            await asyncio.sleep(args.seconds)
            after, t1 = get_json(info["http"] + "/runtime"), time.monotonic()
            done.set()
            if task is not None:
                await task
            dt = t1 - t0
            cpu = (after["cpu_user_seconds"] + after["cpu_system_seconds"]) - (
                before["cpu_user_seconds"] + before["cpu_system_seconds"]
            )
            return {
                "cpu_cores": cpu / dt,
                "mallocs_per_s": (after["mallocs"] - before["mallocs"]) / dt,
                "alloc_bytes_per_s": (after["total_alloc_bytes"] - before["total_alloc_bytes"]) / dt,
                "heap_inuse_bytes": after["heap_inuse_bytes"],
                "goroutines": after["goroutines"],
                "states_received": stats["states"] - s0["states"],
                "bytes_received": stats["bytes"] - s0["bytes"],
                "window_s": dt,
            }

        result = asyncio.run(measure())
        held = len(get_json(info["http"] + "/conns"))
        if held != conns:
            sys.exit(f"{mode} {conns}: {held} connections at the end of the window, not {conns}")
        return {"mode": mode, "conns": conns, "peer_processes": i, "load_avg": os.getloadavg(), **result}
    finally:
        for p in reversed(procs):
            stop(p)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", default="50,500", help="comma-separated connection counts")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds between the last connection and the window")
    ap.add_argument("--reps", type=int, default=1, help="interleaved repetitions of every (size, mode)")
    ap.add_argument("--per-process", type=int, default=125, help="peer hosts per loopback-peers process")
    ap.add_argument("--streams-every", default="10s", help="each peer opens one short stream this often")
    ap.add_argument("--json", type=Path, help="write every run here")
    ap.add_argument(
        "--bin", type=Path, help="a directory holding introspect-node and loopback-peers (default: go build)"
    )
    args = ap.parse_args(argv)
    sizes = [int(c) for c in args.conns.split(",")]
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        sys.exit(f"--modes: choose from {', '.join(MODES)}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="go-host-cost-") as tmp:
        tools = (
            {c: args.bin / c for c in ("introspect-node", "loopback-peers")} if args.bin else build(Path(tmp) / "bin")
        )
        for rep in range(args.reps):
            for conns in sizes:
                for mode in modes:
                    r = one_run(tools, Path(tmp) / f"{rep}-{conns}-{mode}", mode, conns, args)
                    runs.append({"rep": rep, **r})
                    print(
                        f"{conns:>4} conns {mode:<9} cpu {r['cpu_cores'] * 100:6.2f}% of a core  "
                        f"{r['mallocs_per_s']:>9.0f} mallocs/s  {r['alloc_bytes_per_s'] / 1024:>8.0f} KiB/s  "
                        f"heap {r['heap_inuse_bytes'] / 2**20:5.1f} MiB  states {r['states_received']}  "
                        f"load {r['load_avg'][0]:.1f}",
                        flush=True,
                    )
    print("\nmedians over reps:")
    for conns in sizes:
        for mode in modes:
            mine = [r for r in runs if r["conns"] == conns and r["mode"] == mode]
            cpu = statistics.median(r["cpu_cores"] for r in mine)
            allocs = statistics.median(r["alloc_bytes_per_s"] for r in mine)
            print(f"{conns:>4} {mode:<9} cpu {cpu * 100:6.2f}%  alloc {allocs / 1024:8.0f} KiB/s")
    if args.json:
        meta = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        }
        args.json.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
