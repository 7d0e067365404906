"""Load generator for the fleet bench: N introspection servers on one loopback port replaying pre-generated frames.

    python bench/loadgen.py --nodes 300 --port 8765 --horizon 400 --frames-seconds 200 [--connections 50 --streams 3]

It speaks the server side of docs/protocol.md section 3 at ``ws://127.0.0.1:PORT/n/I/introspect``:
HELLO gets OK with the effective config, REQUEST RUNTIME the Runtime, PUSH_ENABLE an OK, and then the
node pushes its events and one State every interval (the first one interval later). The interval is
the one the client asks for (HELLO or UPDATE_CONFIG) rounded up to a whole number of ``--interval``
steps and at most the retention: a node asked for 4 s sends every fourth pre-generated State, with
the events of the steps in between. The retention it declares is the one its States really have
(the generator keeps closed connections ``--retention`` seconds).

Nothing is generated while it serves. Before printing its ``ready`` line it builds K distinct
sequences with ``exporter.generator.SyntheticNode`` (connections x streams with churn), one State and
its events per interval for ``--frames-seconds`` (then a node starts its sequence again, which the
exporter sees as a restart; counted as ``wrapped``), and frames them once. Node I replays sequence I mod K
on a grid: State j goes out at ``base + j*interval + phase(I)`` with phases spread evenly over the
interval. UPDATE_CONFIG re-arms the node as the Go and Python producers re-arm their timer: its next
State goes out one (new) interval after the command, and its phase is where the command fell. Each
State's ``instant_ts`` is patched in place to its send time (6 varint bytes at a known
offset, then the FNV checksum), so the bench can tell how fresh what /probe shows is. Sending is a
copy, a 6-byte patch, a checksum and one WebSocket write (no compression, as the Go server).

It stops by itself after ``--horizon`` seconds (or on SIGTERM/SIGINT) and prints one JSON line of its
own figures: sends, ticks skipped because a write was still blocked, how late sends started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import resource
import signal
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fnv_hash_fast import fnv1a_32  # noqa: E402

from exporter.generator import SyntheticNode  # noqa: E402
from exporter.protocol import introspection_pb2 as pb  # noqa: E402
from exporter.protocol.commands import response  # noqa: E402
from exporter.protocol.framing import encode_segment  # noqa: E402
from exporter.protocol.varint import encode_varint  # noqa: E402

HEADER = struct.Struct("<III")
TS_LOW, TS_HIGH = 1 << 35, 1 << 42  # millisecond times here encode as exactly 6 varint bytes


@dataclass
class Frame:
    """One interval of one sequence: the framed events, the State payload and where its instant_ts sits."""

    events: bytes
    payload: bytes
    ts_at: int  # offset of the 6 varint bytes of State.instant_ts inside payload


@dataclass
class Sequence:
    runtime: bytes
    frames: list[Frame]


def build_sequence(
    seed: int, base_ms: int, interval_ms: int, count: int, connections: int, streams: int, retention_ms: int
) -> Sequence:
    node = SyntheticNode(
        connections=connections,
        streams_per_conn=streams,
        seed=seed,
        start_ms=base_ms,
        interval_ms=interval_ms,
        retention_ms=retention_ms,
    )
    frames = []
    for j in range(count):
        if j:
            node.step()
        events = b"".join(encode_segment(m) for m in node.pending_events)
        node.pending_events.clear()
        msg = node.state()
        payload = msg.SerializeToString()
        needle = b"\x18" + encode_varint(msg.state.instant_ts)
        # instant_ts (field 3) follows the subsystems (field 1, where the DHT's start_ts has the same tag).
        frame = Frame(events, payload, payload.rfind(needle) + 1)
        probe_ts = msg.state.instant_ts + 777
        check = pb.ServerMessage.FromString(patched(frame, probe_ts)[len(events) + HEADER.size :])
        if not TS_LOW <= probe_ts < TS_HIGH or frame.ts_at == 0 or check.state.instant_ts != probe_ts:
            raise SystemExit(f"cannot locate instant_ts in sequence {seed} frame {j}")
        frames.append(frame)
    return Sequence(encode_segment(node.runtime()), frames)


def patched(frame: Frame, ts_ms: int) -> bytes:
    """The State framed for the wire with instant_ts = ts_ms."""
    p, at = frame.payload, frame.ts_at
    body = b"".join((p[:at], encode_varint(ts_ms), p[at + 6 :]))
    return b"".join((frame.events, HEADER.pack(1, fnv1a_32(body), len(body)), body))


class Stats:
    def __init__(self) -> None:
        self.sends = 0
        self.skipped = 0
        self.wrapped = 0
        self.sessions = 0
        self.late_ms: list[float] = []  # how late each send started (capped sample)
        self.bytes = 0
        self.update_configs = 0
        self.steps: dict[int, int] = {}  # node index -> States sent every this many steps now
        self.rearm: dict[int, float] = {}  # node index -> when (ms) its last UPDATE_CONFIG came, not yet applied
        self.wake: dict[int, asyncio.Event] = {}  # wakes a node's pusher out of its sleep to re-arm


async def serve(args: argparse.Namespace) -> dict[str, object]:
    from aiohttp import WSMsgType, web

    interval_ms = int(args.interval * 1000)
    count = math.ceil(((args.frames_seconds or args.horizon) + 30) * 1000 / interval_ms) + 1
    base_ms = int(time.time() * 1000)
    t0 = time.process_time()
    retention_ms = int(args.retention * 1000)
    seqs = [
        build_sequence(1000 + k, base_ms, interval_ms, count, args.connections, args.streams, retention_ms)
        for k in range(args.sequences)
    ]
    max_steps = max(1, retention_ms // interval_ms)
    gen_cpu = time.process_time() - t0
    stats = Stats()
    stop = asyncio.Event()

    def steps_for(asked_ms: int) -> int:
        """Steps of --interval per State for an asked interval: rounded up, within [1, retention]."""
        return min(max_steps, max(1, math.ceil(asked_ms / interval_ms))) if asked_ms else 1

    def config(steps: int) -> pb.Configuration:
        return pb.Configuration(retention_period_ms=retention_ms, state_snapshot_interval_ms=steps * interval_ms)

    def phase(i: int) -> int:
        return (i * interval_ms) // max(1, args.nodes)

    async def push(ws: web.WebSocketResponse, i: int) -> None:
        seq = seqs[i % len(seqs)]
        ph = phase(i)
        j = max(1, math.ceil((time.time() * 1000 + interval_ms - base_ms - ph) / interval_ms))
        sent_j: int | None = None
        wake = stats.wake.setdefault(i, asyncio.Event())
        while not ws.closed:
            k = stats.steps.get(i, 1)
            rearmed = stats.rearm.pop(i, None)
            if rearmed is not None:
                # the next State one interval after the command, on the phase where the command fell
                ph = int((rearmed - base_ms) % interval_ms)
                j = max(j if sent_j is None else sent_j + 1, int((rearmed - base_ms - ph) // interval_ms) + k)
            elif sent_j is not None and j < sent_j + k:
                j = sent_j + k  # the interval grew since the last send: the next State is k steps on
            tick = base_ms + j * interval_ms + ph
            delay = tick / 1000 - time.time()
            if delay > 0:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
                    continue  # re-armed while waiting
            late = time.time() * 1000 - tick
            period = k * interval_ms
            if late > period:  # the previous write blocked past this tick: skip to the next one
                missed = int(late // period)
                stats.skipped += missed
                j += missed * k
                continue
            if j >= len(seq.frames):
                stats.wrapped += 1
            data = patched(seq.frames[j % len(seq.frames)], tick)
            if sent_j is not None and j - sent_j > 1:  # the events of the steps not sent as States
                skipped = b"".join(seq.frames[x % len(seq.frames)].events for x in range(sent_j + 1, j))
                data = skipped + data
            if len(stats.late_ms) < 200_000:
                stats.late_ms.append(late)
            await ws.send_bytes(data)
            stats.sends += 1
            stats.bytes += len(data)
            sent_j = j
            j += stats.steps.get(i, 1)

    async def handle(request: web.Request) -> web.WebSocketResponse:
        i = int(request.match_info["i"])
        ws = web.WebSocketResponse(compress=False, heartbeat=None)
        await ws.prepare(request)
        stats.sessions += 1
        pusher: asyncio.Task[None] | None = None
        hello = False
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            cmd = pb.ClientCommand.FromString(msg.data)
            C = pb.ClientCommand
            if cmd.command == C.HELLO and not hello:
                hello = True
                stats.steps[i] = steps_for(cmd.config.state_snapshot_interval_ms)
                await ws.send_bytes(encode_segment(response(cmd.id, config=config(stats.steps[i]))))
            elif not hello:
                await ws.send_bytes(encode_segment(response(cmd.id, ok=False, error="HELLO first")))
            elif cmd.command == C.REQUEST and cmd.source == C.RUNTIME:
                await ws.send_bytes(seqs[i % len(seqs)].runtime)
            elif cmd.command == C.UPDATE_CONFIG:
                stats.update_configs += 1
                stats.steps[i] = steps_for(cmd.config.state_snapshot_interval_ms)
                stats.rearm[i] = time.time() * 1000
                if i in stats.wake:
                    stats.wake[i].set()
                await ws.send_bytes(encode_segment(response(cmd.id, config=config(stats.steps[i]))))
            elif cmd.command == C.PUSH_ENABLE:
                if cmd.source == C.STATE and pusher is None:
                    pusher = asyncio.create_task(push(ws, i))
                await ws.send_bytes(encode_segment(response(cmd.id)))
            else:
                await ws.send_bytes(encode_segment(response(cmd.id)))
        if pusher is not None:
            pusher.cancel()
        return ws

    app = web.Application()
    app.router.add_get("/n/{i}/introspect", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    frame_kb = sum(len(f.payload) for s in seqs for f in s.frames) / max(1, sum(len(s.frames) for s in seqs)) / 1e3
    print(
        json.dumps(
            {
                "ready": True,
                "base_ms": base_ms,
                "interval_ms": interval_ms,
                "nodes": args.nodes,
                "frames": count * len(seqs),
                "state_kB": round(frame_kb, 1),
                "generation_cpu_s": round(gen_cpu, 1),
            }
        ),
        flush=True,
    )
    serve_cpu0 = time.process_time()
    started = time.monotonic()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), args.horizon)
    serving_s = time.monotonic() - started
    serve_cpu = time.process_time() - serve_cpu0
    await asyncio.wait_for(runner.cleanup(), 5)
    late = sorted(stats.late_ms) or [0.0]
    return {
        "sends": stats.sends,
        "MB_sent": round(stats.bytes / 1e6, 1),
        "skipped_ticks": stats.skipped,
        "wrapped_sends": stats.wrapped,
        "sessions": stats.sessions,
        "update_configs": stats.update_configs,
        # How many nodes push at which interval at the end (ms -> nodes): what the exporter settled on.
        "intervals_ms_at_end": {str(k * interval_ms): n for k, n in sorted(Counter(stats.steps.values()).items())},
        "retention_ms": retention_ms,
        "send_late_ms_p50": round(late[len(late) // 2], 1),
        "send_late_ms_p99": round(late[int(len(late) * 0.99)], 1),
        "send_late_ms_max": round(late[-1], 1),
        "serving_cpu_s": round(serve_cpu, 2),
        "serving_s": round(serving_s, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, required=True, help="how many node URLs will be used (spreads phases)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--horizon", type=float, required=True, help="serve this many seconds, then exit")
    ap.add_argument("--frames-seconds", type=float, default=0.0, help="pre-generate this long (default: horizon)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between States")
    ap.add_argument(
        "--retention", type=float, default=10.0, help="seconds the nodes keep closed connections (and declare)"
    )
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=8, help="distinct pre-generated State sequences")
    args = ap.parse_args()
    result = asyncio.run(serve(args))
    print(json.dumps({"loadgen": result}), flush=True)


if __name__ == "__main__":
    main()
