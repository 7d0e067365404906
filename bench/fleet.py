"""Fleet bench: the exporter in live mode watching N nodes that push one State per second, over loopback.

    .venv/bin/python bench/fleet.py --targets 100,300 --seconds 60 --json fleet.json

Three processes per run: the load generator (``bench/loadgen.py``, replaying pre-generated frames for
N nodes on one port), the exporter (``python -m exporter --target ...``, one target per node), and
this script, which measures from outside during a window of ``--seconds`` after a warm-up:

- CPU of the exporter and of the load generator (``/proc/PID/stat``, utime+stime, as cores), RSS
  (VmRSS sampled each second, VmHWM at the end); this script's own CPU too;
- a full ``/metrics`` scrape every ``--scrape-every`` seconds (15 s, as a Prometheus would): its
  duration, size, and how many nodes read ``libp2p_exporter_up 1`` in it;
- ``/healthz`` every 0.2 s and ``/probe`` of sampled nodes: latency percentiles, timeouts;
- freshness: the generator stamps each State's ``instant_ts`` with its scheduled send time on a grid
  it announces, so a ``/probe`` sent D ms after a send tick shows whether that State is already
  visible (``libp2p_exporter_last_snapshot_timestamp_seconds``); D cycles over ``--fresh-delays``.
  Strictly fresh within D: visible, and the probe answered within 100 ms; also the age of the shown
  State when the answer arrives;
- States accepted and messages dropped (from the last scrape), the generator's own lateness.

Every run is bounded: the generator gets SIGTERM at the end (and exits by itself after a horizon
well past the run's longest possible length), and the exporter gets SIGTERM, then
SIGKILL after 5 s (recorded: whether SIGTERM alone stopped it). ``--max-rss-mib`` ends a run early
when the exporter grows past it. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UP = re.compile(rb"^libp2p_exporter_up\{[^}]*\} (\S+)$", re.M)
ACCEPTED = re.compile(rb"^libp2p_exporter_snapshots_total\{[^}]*\} (\S+)$", re.M)
DROPPED = re.compile(rb"^libp2p_exporter_session_dropped_messages_total\{[^}]*\} (\S+)$", re.M)
LAST_TS = re.compile(rb"^libp2p_exporter_last_snapshot_timestamp_seconds\{[^}]*\} (\S+)$", re.M)
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def mem_mib(pid: int) -> tuple[float, float]:
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            vals[line.split(":")[0]] = int(line.split()[1]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


def get(url: str, timeout: float) -> tuple[float, bytes | None]:
    """Latency in seconds and the body, or None on error or timeout (latency then = time waited)."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
    except (OSError, urllib.error.URLError):
        return time.monotonic() - t0, None
    return time.monotonic() - t0, body


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1e3, 1)


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


class Run:
    def __init__(self, args: argparse.Namespace, targets: int) -> None:
        self.args, self.n = args, targets
        self.stop = threading.Event()
        self.scrapes: list[dict[str, object]] = []
        self.healthz: list[float] = []
        self.healthz_fail = 0
        self.probes: list[float] = []
        self.probe_fail = 0
        self.fresh: dict[int, list[tuple[bool, float]]] = {d: [] for d in args.fresh_delays}  # visible, latency
        self.age_ms: list[float] = []
        self.rss: list[float] = []
        self.aborted = ""

    # -- the measuring threads -----------------------------------------------------------------
    def scraper(self, url: str) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            took, body = get(url, self.args.scrape_timeout)
            row: dict[str, object] = {"t": round(started - self.t0, 1), "s": round(took, 3)}
            if body is None:
                row["error"] = True
            else:
                ups = UP.findall(body)
                row.update(
                    bytes=len(body),
                    up=sum(1 for v in ups if float(v) == 1.0),
                    nodes=len(ups),
                    accepted=sum(float(v) for v in ACCEPTED.findall(body)),
                    dropped=sum(float(v) for v in DROPPED.findall(body)),
                )
            self.scrapes.append(row)
            self.stop.wait(max(0.0, self.args.scrape_every - (time.monotonic() - started)))

    def health(self, url: str) -> None:
        while not self.stop.is_set():
            took, body = get(url, 30)
            if body is None:
                self.healthz_fail += 1
            else:
                self.healthz.append(took)
            self.stop.wait(max(0.0, 0.2 - took))

    def freshness(self, base: str, grid: dict[str, int]) -> None:
        """Probe node i at its send tick + D and check that tick's State is what /probe shows."""
        interval, base_ms = grid["interval_ms"], grid["base_ms"]
        sample = sorted({(k * 7919) % self.n for k in range(min(self.n, 16))})
        k = 0
        while not self.stop.is_set():
            i = sample[k % len(sample)]
            delay = self.args.fresh_delays[(k // len(sample)) % len(self.args.fresh_delays)]
            k += 1
            phase = (i * interval) // self.n
            now_ms = time.time() * 1000
            j = -int(-(now_ms - delay - base_ms - phase) // interval)  # the first tick with tick + D >= now
            tick = base_ms + j * interval + phase
            wait = (tick + delay) / 1000 - time.time()
            if self.stop.wait(max(0.0, wait)):
                return
            took, body = get(f"{base}/probe?target={self.urls[i]}", 30)
            received = time.time() * 1000
            if body is None:
                self.probe_fail += 1
                continue
            self.probes.append(took)
            found = LAST_TS.findall(body)
            if found:
                shown = round(float(found[0]) * 1000)
                self.fresh[delay].append((shown >= tick, took))
                self.age_ms.append(received - shown)

    def sampler(self, pid: int) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError):
                rss, _ = mem_mib(pid)
                self.rss.append(rss)
                if rss > self.args.max_rss_mib:
                    self.aborted = f"exporter RSS {rss:.0f} MiB > --max-rss-mib {self.args.max_rss_mib}"
                    self.stop.set()
            self.stop.wait(1.0)

    # -- one run ------------------------------------------------------------------------------------
    def go(self) -> dict[str, object]:
        a = self.args
        gport, eport = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        # States keep coming (no sequence restarts) through the window and the last scrape's wait.
        needed = a.up_timeout + a.warmup + a.seconds + a.scrape_timeout + 30
        horizon = needed + 2 * a.scrape_timeout + 60  # a safety stop only: the generator is stopped below
        gen = subprocess.Popen(
            [
                *(sys.executable, str(REPO / "bench" / "loadgen.py"), "--nodes", str(self.n), "--port", str(gport)),
                *("--horizon", str(horizon), "--connections", str(a.connections), "--streams", str(a.streams)),
                *("--sequences", str(a.sequences), "--interval", str(a.interval), "--frames-seconds", str(needed)),
            ],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert gen.stdout is not None
        grid = json.loads(gen.stdout.readline())
        self.urls = [f"ws://127.0.0.1:{gport}/n/{i}/introspect" for i in range(self.n)]
        log = tempfile.NamedTemporaryFile(prefix="fleet-exporter-", suffix=".log", delete=False)  # noqa: SIM115
        exporter = subprocess.Popen(
            [
                *(sys.executable, "-m", "exporter", *(f"--target=n{i:04d}={u}" for i, u in enumerate(self.urls))),
                *("--web.listen-address", f"127.0.0.1:{eport}", "--log.level", "warn", "--interval", f"{a.interval}s"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=REPO,
        )
        base = f"http://127.0.0.1:{eport}"
        result: dict[str, object] = {"targets": self.n, "loadavg_start": loadavg(), "generator": grid}
        threads: list[threading.Thread] = []
        try:
            t_start = time.monotonic()
            up_after = None
            while (left := a.up_timeout - (time.monotonic() - t_start)) > 0:
                _, body = get(base + "/metrics", max(1.0, min(a.scrape_timeout, left)))
                if body is not None and sum(1 for v in UP.findall(body) if float(v) == 1.0) >= self.n:
                    up_after = round(time.monotonic() - t_start, 1)
                    break
                time.sleep(5)  # a full scrape is heavy for an overloaded exporter: poll gently
            result["all_up_after_s"] = up_after  # None: not all up within --up-timeout
            time.sleep(a.warmup)
            self.t0 = time.monotonic()
            cpu_e0, cpu_g0, self_0 = cpu_s(exporter.pid), cpu_s(gen.pid), time.process_time()
            for target, args in (
                (self.scraper, (base + "/metrics",)),
                (self.health, (base + "/healthz",)),
                (self.freshness, (base, grid)),
                (self.sampler, (exporter.pid,)),
            ):
                th = threading.Thread(target=target, args=args, daemon=True)
                th.start()
                threads.append(th)
            self.stop.wait(a.seconds)
            window = time.monotonic() - self.t0
            cpu_e, cpu_g = cpu_s(exporter.pid) - cpu_e0, cpu_s(gen.pid) - cpu_g0
            self_cpu = time.process_time() - self_0
            rss_end, hwm = mem_mib(exporter.pid)
            result["generator_running_through_window"] = gen.poll() is None
            self.stop.set()
            for th in threads:
                th.join(a.scrape_timeout + 5)
            result.update(self.summary(window, cpu_e, cpu_g, self_cpu, rss_end, hwm))
        finally:
            self.stop.set()
            result["sigterm_exit_s"] = stop_process(exporter)  # still under load: does SIGTERM work then?
            stop_process(gen)
            with contextlib.suppress(Exception):
                result["loadgen"] = json.loads(gen.stdout.read() or "{}").get("loadgen")
            log.close()
            tail = Path(log.name).read_text(errors="replace").splitlines()
            result["exporter_log_lines"] = len(tail)
            result["exporter_log_tail"] = tail[-3:]
            os.unlink(log.name)
            result["loadavg_end"] = loadavg()
        return result

    def summary(
        self, window: float, cpu_e: float, cpu_g: float, self_cpu: float, rss: float, hwm: float
    ) -> dict[str, object]:
        ok = [s for s in self.scrapes if "error" not in s]
        durations = [float(s["s"]) for s in self.scrapes]  # type: ignore[arg-type]
        last = ok[-1] if ok else {}
        first_acc = float(ok[0]["accepted"]) if ok else 0.0  # type: ignore[arg-type]
        return {
            "window_s": round(window, 1),
            "aborted": self.aborted or None,
            "exporter_cpu_cores": round(cpu_e / window, 3),
            "loadgen_cpu_cores": round(cpu_g / window, 3),
            "harness_cpu_cores": round(self_cpu / window, 3),
            "rss_mib_end": round(rss, 1),
            "rss_mib_peak": round(max([hwm, *self.rss]), 1),
            "scrapes": len(self.scrapes),
            "scrape_errors_or_timeouts": len(self.scrapes) - len(ok),
            "scrape_s": [round(d, 2) for d in durations],
            "scrape_s_max": round(max(durations), 2) if durations else None,
            # From the last scrape that completed; None when none did.
            "metrics_MB": round(int(last["bytes"]) / 1e6, 1) if ok else None,  # type: ignore[call-overload]
            "up_per_scrape": [s.get("up") for s in self.scrapes],
            "every_node_up_at_every_scrape": bool(ok)
            and len(ok) == len(self.scrapes)
            and all(s["up"] == self.n for s in ok),
            "states_accepted_between_first_and_last_scrape": (
                int(float(last["accepted"]) - first_acc) if ok else None  # type: ignore[arg-type]
            ),
            "states_expected_between_first_and_last_scrape": (
                int(self.n * (float(last["t"]) - float(ok[0]["t"])) / self.args.interval) if ok else None  # type: ignore[arg-type]
            ),
            "messages_dropped_total": int(float(last["dropped"])) if ok else None,  # type: ignore[arg-type]
            "healthz_ms_p50_p99_max": [
                ms(pct(self.healthz, 0.5)),
                ms(pct(self.healthz, 0.99)),
                ms(pct(self.healthz, 1.0)),
            ],
            "healthz_n_fail": [len(self.healthz), self.healthz_fail],
            "probe_ms_p50_p99_max": [ms(pct(self.probes, 0.5)), ms(pct(self.probes, 0.99)), ms(pct(self.probes, 1.0))],
            "probe_n_fail": [len(self.probes), self.probe_fail],
            # Per delay D: probes sent D ms after a send tick; the share that showed that tick's State,
            # and the share that showed it AND answered within 100 ms (a slow /probe may show a State
            # that arrived long after the tick).
            "fresh_by_delay_ms": {
                str(d): {
                    "probes": len(v),
                    "visible": round(sum(1 for ok, _ in v if ok) / len(v), 3) if v else None,
                    "visible_answered_100ms": round(sum(1 for ok, t in v if ok and t <= 0.1) / len(v), 3)
                    if v
                    else None,
                }
                for d, v in self.fresh.items()
            },
            "age_at_probe_answer_ms_p50_p99": [
                None if not self.age_ms else round(statistics.median(self.age_ms)),
                None if not self.age_ms else round(pct(self.age_ms, 0.99) or 0),
            ],
        }


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> float | None:
    """SIGTERM, then SIGKILL after 5 s. Returns how long SIGTERM took, or None when SIGKILL was needed."""
    if proc.poll() is not None:
        return 0.0
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
        return round(time.monotonic() - t0, 2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="100,300", help="comma-separated fleet sizes, one run each")
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window per run")
    ap.add_argument("--warmup", type=float, default=10.0, help="after every node is up (or --up-timeout)")
    ap.add_argument("--up-timeout", type=float, default=90.0, help="give up waiting for all nodes up after this")
    ap.add_argument("--scrape-every", type=float, default=15.0)
    ap.add_argument("--scrape-timeout", type=float, default=120.0)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between a node's States")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--fresh-delays", default="25,50,100,250", help="ms after a send tick to probe")
    ap.add_argument("--max-rss-mib", type=float, default=4096.0)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    args.fresh_delays = [int(x) for x in args.fresh_delays.split(",")]
    results = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cores": os.cpu_count(),
        "runs": [],
    }
    for n in (int(x) for x in args.targets.split(",")):
        run = Run(args, n).go()
        print(json.dumps(run), flush=True)
        results["runs"].append(run)  # type: ignore[union-attr]
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
