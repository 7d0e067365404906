"""Fleet bench: the exporter in live mode watching N nodes that push one State per second, over loopback.

    .venv/bin/python bench/fleet.py --targets 100,300 --seconds 60 --json fleet.json
    .venv/bin/python bench/fleet.py --replicas 2 --targets 200,600 --seconds 45 --json shards.json

Three processes per run (four with ``--otlp``): the load generator (``bench/loadgen.py``, replaying
pre-generated frames for N nodes on one port), the exporter (``python -m exporter --target ...``, one
target per node), and this script, which measures from outside during a window of ``--seconds`` after
a warm-up:

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

With ``--replicas K`` (K > 1) the fleet is split as a sharded deployment would split it: one config
file lists all N targets, and K exporters run ``--config FILE --shard I --total-shards K``, each on
its own port. Every replica is measured on its own (CPU, RSS, its scrapes, the nodes up in them,
States accepted against what its share of the nodes sent, drops; ``/healthz``), the K scrapes of a
round are sent together, and the totals are summed per round: all nodes are up in a round when the
replicas' up nodes add to N. ``/probe`` goes to the replica that owns the sampled node
(``exporter.sources.sharding.Shard``). The load generator shares the same cores: its CPU is recorded.

With ``--otlp`` tracing is on (issue 20's "every connection, stream and DHT query traced"): a real
OTLP/HTTP receiver (``bench/otlp_sink.py``) runs as a fourth process, and each exporter gets
``--otlp.endpoint http://127.0.0.1:PORT --otlp.protocol http/protobuf`` with the default sampling
(everything kept; ``--exporter-args`` come after and may change it). The receiver decodes every
request (``ExportTraceServiceRequest``), counts spans by name and SpanKind, and answers 200. The run's
``otlp`` entry holds its CPU (as cores) and RSS; the spans, requests and bytes it received in the
window (its ``GET /counts`` at the window's edges) and per second; and, between the first and the last
scrape round, the exporters' ``libp2p_exporter_spans_{started,sampled_out,dropped,exported,
export_failed}_total`` and ``libp2p_exporter_span_exports_total`` (summed over nodes and replicas,
split by kind, reason or result) next to what the receiver got over the same rounds (its counts read
just before each round is sent). Per replica: the governor's ``libp2p_exporter_ingest_span_share_ratio``
and the spans held open, per scrape. The receiver is stopped last, after the exporters have flushed;
its totals at exit are kept too. Three more regular expressions run over each scrape then.

Every run is bounded: the generator (and the OTLP receiver) gets SIGTERM at the end (and exits by
itself after a horizon well past the run's longest possible length), and each exporter gets SIGTERM,
then SIGKILL after 5 s (recorded: whether SIGTERM alone stopped it). ``--max-rss-mib`` ends a run early
when an exporter grows past it. Loopback only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import re
import shlex
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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from exporter.sources.sharding import Shard  # noqa: E402

UP = re.compile(rb"^libp2p_exporter_up\{[^}]*\} (\S+)$", re.M)
ACCEPTED = re.compile(rb"^libp2p_exporter_snapshots_total\{[^}]*\} (\S+)$", re.M)
DROPPED = re.compile(rb"^libp2p_exporter_session_dropped_messages_total\{[^}]*\} (\S+)$", re.M)
LAST_TS = re.compile(rb"^libp2p_exporter_last_snapshot_timestamp_seconds\{[^}]*\} (\S+)$", re.M)
SHARD_TARGETS = re.compile(rb"^libp2p_exporter_shard_targets\{[^}]*\} (\S+)$", re.M)
# Issue 20's series: the governor's factor and loop share, stalled teardowns, States shed unparsed.
FACTOR = re.compile(rb"^libp2p_exporter_ingest_interval_factor(?:\{[^}]*\})? (\S+)$", re.M)
LOOP_CPU = re.compile(rb"^libp2p_exporter_ingest_loop_cpu_ratio(?:\{[^}]*\})? (\S+)$", re.M)
STALLED = re.compile(rb'^libp2p_exporter_session_failures_total\{[^}]*reason="stalled"[^}]*\} (\S+)$', re.M)
SHED = re.compile(rb'^libp2p_exporter_session_shed_before_parse_total\{[^}]*kind="state"[^}]*\} (\S+)$', re.M)
# States accepted further apart than the node's retention: counts may miss what opened and closed between.
GAPS = re.compile(rb"^libp2p_exporter_retention_gaps_total\{[^}]*\} (\S+)$", re.M)
# The paced collector (exporter/app/gc_pacer.py): full collections and the time they held every thread.
GC_COUNT = re.compile(rb"^libp2p_exporter_gc_collections_total(?:\{[^}]*\})? (\S+)$", re.M)
GC_PAUSE = re.compile(rb"^libp2p_exporter_gc_pause_seconds_total(?:\{[^}]*\})? (\S+)$", re.M)
AGREED = re.compile(rb"^libp2p_exporter_session_interval_seconds\{[^}]*\} (\S+)$", re.M)
# --otlp: tracing's self-metrics (exporter/sinks/otel/metrics.py), one pass for all six counters; the
# label that splits them (kind, reason or result) is read from the label set.
SPANS = re.compile(
    rb"^libp2p_exporter_(spans_started|spans_sampled_out|spans_dropped|spans_exported|spans_export_failed"
    rb"|span_exports)_total\{([^}]*)\} (\S+)$",
    re.M,
)
SPAN_SPLIT = re.compile(rb'(?:^|,)(?:kind|reason|result)="([^"]*)"')
SPANS_OPEN = re.compile(rb"^libp2p_exporter_spans_open\{[^}]*\} (\S+)$", re.M)
SPAN_SHARE = re.compile(rb"^libp2p_exporter_ingest_span_share_ratio(?:\{[^}]*\})? (\S+)$", re.M)
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


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


class Replica:
    """One exporter process and what was measured of it."""

    def __init__(self, index: int, owned: list[int], proc: subprocess.Popen[bytes], base: str, log: str) -> None:
        self.index, self.owned, self.proc, self.base, self.log = index, owned, proc, base, log
        self.scrapes: list[dict[str, object]] = []
        self.healthz: list[float] = []
        self.healthz_fail = 0
        self.rss: list[float] = []
        self.rss_at: list[float] = []  # seconds into the window of each rss sample


def rss_minutes(rep: Replica) -> list[list[float]]:
    minutes: dict[int, list[float]] = {}
    for at, rss in zip(rep.rss_at, rep.rss, strict=True):
        minutes.setdefault(int(at // 60), []).append(rss)
    return [[round(min(v), 1), round(max(v), 1)] for _, v in sorted(minutes.items())]


def rss_growth(rep: Replica) -> float | None:
    mins = rss_minutes(rep)
    if len(mins) < 2:
        return None
    return round(100 * (mins[-1][0] - mins[0][0]) / mins[0][0], 2)


def span_counters(body: bytes) -> dict[str, dict[str, float]] | None:
    """The tracing counters summed over nodes: family -> {kind/reason/result or "all": value}; None: absent."""
    out: dict[str, dict[str, float]] = {}
    for family, labels, value in SPANS.findall(body):
        m = SPAN_SPLIT.search(labels)
        split = m.group(1).decode() if m else "all"
        per = out.setdefault(family.decode(), {})
        per[split] = per.get(split, 0.0) + float(value)
    return out or None


def scrape_row(body: bytes | None, took: float, t: float, otlp: bool = False) -> dict[str, object]:
    row: dict[str, object] = {"t": t, "s": round(took, 3)}
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
        if m := SHARD_TARGETS.search(body):
            row["shard_targets"] = int(float(m.group(1)))
        if m := FACTOR.search(body):
            row["factor"] = float(m.group(1))
        if m := LOOP_CPU.search(body):
            row["loop_cpu"] = round(float(m.group(1)), 3)
        row["stalled"] = sum(float(v) for v in STALLED.findall(body))
        row["shed_states"] = sum(float(v) for v in SHED.findall(body))
        row["gaps"] = sum(float(v) for v in GAPS.findall(body))
        if (m := GC_PAUSE.search(body)) and (k := GC_COUNT.search(body)):
            row["gc"] = [int(float(k.group(1))), round(float(m.group(1)), 3)]
        agreed = sorted(float(v) for v in AGREED.findall(body))
        if agreed:
            row["agreed_interval_s_median"] = agreed[len(agreed) // 2]
        if otlp:  # three more passes over the body: only when tracing is on
            row["spans"] = span_counters(body)
            row["spans_open"] = sum(float(v) for v in SPANS_OPEN.findall(body))
            if m := SPAN_SHARE.search(body):
                row["span_share"] = float(m.group(1))
    return row


class Run:
    def __init__(self, args: argparse.Namespace, targets: int) -> None:
        self.args, self.n = args, targets
        self.k = max(1, args.replicas)
        self.stop = threading.Event()
        self.replicas: list[Replica] = []
        self.probes: list[float] = []
        self.probe_fail = 0
        self.fresh: dict[int, list[tuple[bool, float]]] = {d: [] for d in args.fresh_delays}  # visible, latency
        self.age_ms: list[float] = []
        # --probe-all: every node probed once per --scrape-every (as Prometheus after /discovery).
        # (seconds, probed, up, stalled, shed, accepted, retention gaps)
        self.sweeps: list[tuple[float, int, int, int, int, int, int]] = []
        self.sweep_starts: list[float] = []
        self.sweep_probes: list[float] = []
        self.sweep_fail = 0
        self.aborted = ""
        # --otlp: the OTLP receiver's base URL, and its counts read just before each scrape round is sent.
        self.sink_base = ""
        self.sink_rounds: list[dict[str, object] | None] = []
        self.otlp_flags: list[str] = []
        self.t0 = time.monotonic()
        self.parser = concurrent.futures.ProcessPoolExecutor(1)

    # -- the measuring threads -----------------------------------------------------------------
    def round_of_scrapes(self, timeout: float) -> list[tuple[float, bytes | None]]:
        """One full /metrics scrape of every replica, sent together; (latency, body) per replica."""
        out: list[tuple[float, bytes | None]] = [(0.0, None)] * len(self.replicas)

        def one(j: int) -> None:
            out[j] = get(self.replicas[j].base + "/metrics", timeout)

        ths = [threading.Thread(target=one, args=(j,), daemon=True) for j in range(len(self.replicas))]
        for th in ths:
            th.start()
        for th in ths:
            th.join(timeout + 5)
        return out

    def scraper(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            t = round(started - self.t0, 1)
            if self.sink_base:
                self.sink_rounds.append(self.sink_counts())
            for rep, (took, body) in zip(self.replicas, self.round_of_scrapes(self.args.scrape_timeout), strict=True):
                # Parsed in another process: eight regular expressions over a 15-40 MB body hold this
                # process's GIL for seconds, and the /healthz and /probe timings taken by the other
                # threads would include that wait (an artefact of the harness, not the exporter).
                rep.scrapes.append(self.parser.submit(scrape_row, body, took, t, self.args.otlp).result())
            self.stop.wait(max(0.0, self.args.scrape_every - (time.monotonic() - started)))

    def sink_counts(self) -> dict[str, object] | None:
        """The OTLP receiver's counts so far (its GET /counts), or None when it did not answer."""
        _, body = get(self.sink_base + "/counts", 10)
        counts: dict[str, object] | None = None if body is None else json.loads(body)
        return counts

    def health(self, rep: Replica) -> None:
        while not self.stop.is_set():
            took, body = get(rep.base + "/healthz", 30)
            if body is None:
                rep.healthz_fail += 1
            else:
                rep.healthz.append(took)
            self.stop.wait(max(0.0, 0.2 - took))

    def freshness(self, grid: dict[str, int]) -> None:
        """Probe node i (at the replica that owns it) at its send tick + D; is that tick's State shown?"""
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
            base = self.replicas[self.owner[i]].base
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

    def sweep(self, timeout: float = 30.0) -> tuple[float, int, int, int, int, int, int]:
        """Probe every node once, spread over ``--probe-threads``; (seconds, answered, up, stalled teardowns,
        States shed unparsed, States accepted, retention gaps), the counts summed over the nodes."""
        threads = max(1, self.args.probe_threads)
        started = time.monotonic()
        counts = [0, 0, 0, 0, 0, 0]
        lock = threading.Lock()

        def worker(w: int) -> None:
            for i in range(w, self.n, threads):
                base = self.replicas[self.owner[i]].base
                took, body = get(f"{base}/probe?target={self.urls[i]}", timeout)
                with lock:
                    if body is None:
                        self.sweep_fail += 1
                        continue
                    self.sweep_probes.append(took)
                    counts[0] += 1
                    m = UP.search(body)
                    counts[1] += int(m is not None and float(m.group(1)) == 1.0)
                    counts[2] += int(sum(float(v) for v in STALLED.findall(body)))
                    counts[3] += int(sum(float(v) for v in SHED.findall(body)))
                    counts[4] += int(sum(float(v) for v in ACCEPTED.findall(body)))
                    counts[5] += int(sum(float(v) for v in GAPS.findall(body)))

        ths = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(threads)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(timeout * self.n)
        return time.monotonic() - started, *counts  # type: ignore[return-value]

    def sweep_rate(self, column: int) -> float | None:
        """A summed counter's rate between the first and the last sweep's start (a sweep reads each
        node once, spread over the sweep, so this is approximate by a sweep's length at each end)."""
        done = list(zip(self.sweep_starts, self.sweeps))
        if len(done) < 2 or done[-1][0] <= done[0][0]:
            return None
        return round((done[-1][1][column] - done[0][1][column]) / (done[-1][0] - done[0][0]), 1)

    def prober(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self.sweep_starts.append(started)
            self.sweeps.append(self.sweep())
            self.stop.wait(max(0.0, self.args.scrape_every - (time.monotonic() - started)))

    def sampler(self) -> None:
        while not self.stop.is_set():
            for rep in self.replicas:
                with contextlib.suppress(OSError):
                    rss, _ = mem_mib(rep.proc.pid)
                    rep.rss.append(rss)
                    rep.rss_at.append(time.monotonic() - self.t0)
                    if rss > self.args.max_rss_mib:
                        self.aborted = f"exporter {rep.index} RSS {rss:.0f} MiB > --max-rss-mib {self.args.max_rss_mib}"
                        self.stop.set()
            self.stop.wait(1.0)

    def warm_up(self, seconds: float) -> None:
        """Wait out the warm-up; with --warmup-scrapes, scrape (or probe) at the window's cadence.

        Unrecorded: they only make the window's first minute look like its last (blocks rendered,
        caches warm), so RSS growth read from that minute is the exporter's, not the first scrape's.
        """
        end = time.monotonic() + seconds
        if not self.args.warmup_scrapes:
            time.sleep(seconds)
            return
        while (left := end - time.monotonic()) > 0:
            started = time.monotonic()
            if self.args.probe_all:
                self.sweep(timeout=max(1.0, min(30.0, left)))
            else:
                self.round_of_scrapes(max(1.0, min(self.args.scrape_timeout, left)))
            time.sleep(max(0.0, min(end - time.monotonic(), self.args.scrape_every - (time.monotonic() - started))))

    # -- one run ------------------------------------------------------------------------------------
    def start_exporters(self, env: dict[str, str], cfg_path: str) -> None:
        a = self.args
        names = [f"n{i:04d}" for i in range(self.n)]
        shard = Shard(0, self.k)
        self.owner = [shard.of(name) for name in names]
        if self.k > 1:
            lines = [f"  - {{name: {nm}, url: '{u}'}}" for nm, u in zip(names, self.urls, strict=True)]
            Path(cfg_path).write_text("targets:\n" + "\n".join(lines) + "\n")
        for r in range(self.k):
            port = free_port()
            if self.k > 1:
                which = ["--config", cfg_path, "--shard", str(r), "--total-shards", str(self.k)]
            else:  # today's single exporter, exactly: one --target flag per node
                which = [f"--target={nm}={u}" for nm, u in zip(names, self.urls, strict=True)]
            log = tempfile.NamedTemporaryFile(prefix=f"fleet-exporter{r}-", suffix=".log", delete=False)  # noqa: SIM115
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "exporter", *which),
                    *(
                        "--web.listen-address",
                        f"127.0.0.1:{port}",
                        "--log.level",
                        "warn",
                        "--interval",
                        f"{a.interval}s",
                    ),
                    *self.otlp_flags,
                    *shlex.split(a.exporter_args),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=REPO,
            )
            log.close()
            owned = [i for i in range(self.n) if self.owner[i] == r]
            self.replicas.append(Replica(r, owned, proc, f"http://127.0.0.1:{port}", log.name))

    def go(self) -> dict[str, object]:
        a = self.args
        gport = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        # States keep coming (no sequence restarts) through the window and the last scrape's wait.
        needed = a.up_timeout + a.warmup + a.seconds + a.scrape_timeout + 30
        horizon = needed + 2 * a.scrape_timeout + 60  # a safety stop only: the generator is stopped below
        gen = subprocess.Popen(
            [
                *(sys.executable, str(REPO / "bench" / "loadgen.py"), "--nodes", str(self.n), "--port", str(gport)),
                *("--horizon", str(horizon), "--connections", str(a.connections), "--streams", str(a.streams)),
                *("--sequences", str(a.sequences), "--interval", str(a.interval), "--frames-seconds", str(needed)),
                *("--retention", str(a.retention)),
            ],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert gen.stdout is not None
        grid = json.loads(gen.stdout.readline())
        sink: subprocess.Popen[str] | None = None
        if a.otlp:  # its own process, so its CPU is neither the exporter's nor this script's
            sink = subprocess.Popen(
                [sys.executable, str(REPO / "bench" / "otlp_sink.py"), "--horizon", str(horizon + 30)],
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            assert sink.stdout is not None
            sink_port = json.loads(sink.stdout.readline())["port"]
            self.sink_base = f"http://127.0.0.1:{sink_port}"
            self.otlp_flags = ["--otlp.endpoint", self.sink_base, "--otlp.protocol", "http/protobuf"]
        self.urls = [f"ws://127.0.0.1:{gport}/n/{i}/introspect" for i in range(self.n)]
        cfg_fd, cfg_path = tempfile.mkstemp(prefix="fleet-targets-", suffix=".yml")
        os.close(cfg_fd)
        result: dict[str, object] = {
            "targets": self.n,
            "replicas": self.k,
            "loadavg_start": loadavg(),
            "uptime_start": uptime(),
            "generator": grid,
        }
        threads: list[threading.Thread] = []
        try:
            self.start_exporters(env, cfg_path)
            t_start = time.monotonic()
            up_after = None
            while (left := a.up_timeout - (time.monotonic() - t_start)) > 0:
                if a.probe_all:  # nodes are not on /metrics: probe them all
                    up = self.sweep(timeout=max(1.0, min(30.0, left)))[2]
                else:
                    bodies = self.round_of_scrapes(max(1.0, min(a.scrape_timeout, left)))
                    up = sum(sum(1 for v in UP.findall(b) if float(v) == 1.0) for _, b in bodies if b is not None)
                if up >= self.n:
                    up_after = round(time.monotonic() - t_start, 1)
                    break
                time.sleep(5)  # a full scrape is heavy for an overloaded exporter: poll gently
            result["all_up_after_s"] = up_after  # None: not all up within --up-timeout
            self.warm_up(a.warmup)
            self.t0 = time.monotonic()
            pids = [rep.proc.pid for rep in self.replicas]
            cpu_e0, cpu_g0, self_0 = [cpu_s(p) for p in pids], cpu_s(gen.pid), time.process_time()
            cpu_r0 = cpu_s(sink.pid) if sink else 0.0
            sink_w0 = self.sink_counts() if sink else None
            jobs: list[tuple[object, tuple[object, ...]]] = [(self.scraper, ()), (self.freshness, (grid,))]
            jobs += [(self.health, (rep,)) for rep in self.replicas] + [(self.sampler, ())]
            if a.probe_all:
                self.sweep_probes, self.sweep_fail = [], 0  # the window's, not the wait's
                jobs.append((self.prober, ()))
            for target, args in jobs:
                th = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
                th.start()
                threads.append(th)
            self.stop.wait(a.seconds)
            window = time.monotonic() - self.t0
            cpu_e = [cpu_s(p) - c0 for p, c0 in zip(pids, cpu_e0, strict=True)]
            cpu_g = cpu_s(gen.pid) - cpu_g0
            self_cpu = time.process_time() - self_0
            mems = [mem_mib(p) for p in pids]
            cpu_r = cpu_s(sink.pid) - cpu_r0 if sink else 0.0
            sink_w1 = self.sink_counts() if sink else None
            sink_mem = mem_mib(sink.pid) if sink else (0.0, 0.0)
            result["generator_running_through_window"] = gen.poll() is None
            result["uptime_end_of_window"] = uptime()
            self.stop.set()
            for th in threads:
                th.join(a.scrape_timeout + 5)
            result.update(self.summary(window, cpu_e, cpu_g, self_cpu, mems))
            if sink:
                result["otlp"] = self.otlp_summary(window, cpu_r, sink_mem, sink_w0, sink_w1)
        finally:
            self.stop.set()
            # Still under load: does SIGTERM work then? All at once, so one's exit does not unload the rest.
            exits: list[float | None] = [None] * len(self.replicas)

            def stop_one(j: int) -> None:
                exits[j] = stop_process(self.replicas[j].proc)

            stoppers = [threading.Thread(target=stop_one, args=(j,)) for j in range(len(self.replicas))]
            for th in stoppers:
                th.start()
            for th in stoppers:
                th.join()
            stop_process(gen)
            with contextlib.suppress(Exception):
                result["loadgen"] = json.loads(gen.stdout.read() or "{}").get("loadgen")
            if sink:  # last: it also receives what the exporters flush as they stop
                sink_exit = stop_process(sink)
                with contextlib.suppress(Exception):
                    otlp = result.setdefault("otlp", {})
                    otlp["receiver_sigterm_exit_s"] = sink_exit  # type: ignore[index]
                    # Its totals since it started, including the warm-up and the exporters' flush at SIGTERM.
                    otlp["receiver_at_exit"] = json.loads(sink.stdout.read() or "{}").get("otlp_sink")  # type: ignore[index, union-attr]
            for j, rep in enumerate(self.replicas):
                tail = Path(rep.log).read_text(errors="replace").splitlines()
                os.unlink(rep.log)
                info = {"sigterm_exit_s": exits[j], "exporter_log_lines": len(tail), "exporter_log_tail": tail[-3:]}
                if self.k == 1:
                    result.update(info)
                else:
                    per = result.setdefault("replica", [{} for _ in self.replicas])
                    per[j].update(info)  # type: ignore[index]
            os.unlink(cfg_path)
            result["loadavg_end"] = loadavg()
            self.parser.shutdown(cancel_futures=True)
        return result

    def replica_summary(self, rep: Replica, window: float, cpu: float, rss: float, hwm: float) -> dict[str, object]:
        ok = [s for s in rep.scrapes if "error" not in s]
        durations = [float(s["s"]) for s in rep.scrapes]  # type: ignore[arg-type]
        last = ok[-1] if ok else {}
        first_acc = float(ok[0]["accepted"]) if ok else 0.0  # type: ignore[arg-type]
        n = len(rep.owned)
        out: dict[str, object] = {}
        if self.k > 1:
            out.update(shard=rep.index, owned_targets=n, shard_targets_metric=last.get("shard_targets"))
        out.update(
            exporter_cpu_cores=round(cpu / window, 3),
            rss_mib_end=round(rss, 1),
            rss_mib_peak=round(max([hwm, *rep.rss]), 1),
            # Per minute of the window: the lowest RSS (between scrapes) and the highest (at a scrape);
            # the growth is read on the lows, first minute to last, so scrape-time peaks do not count.
            rss_mib_per_minute_min_max=rss_minutes(rep),
            rss_growth_pct_first_to_last_minute_min=rss_growth(rep),
            scrapes=len(rep.scrapes),
            scrape_errors_or_timeouts=len(rep.scrapes) - len(ok),
            scrape_s=[round(d, 2) for d in durations],
            scrape_s_max=round(max(durations), 2) if durations else None,
            # From the last scrape that completed; None when none did.
            metrics_MB=round(int(last["bytes"]) / 1e6, 1) if ok else None,  # type: ignore[call-overload]
            up_per_scrape=[s.get("up") for s in rep.scrapes],
            every_node_up_at_every_scrape=bool(ok) and len(ok) == len(rep.scrapes) and all(s["up"] == n for s in ok),
            states_accepted_between_first_and_last_scrape=(
                int(float(last["accepted"]) - first_acc) if ok else None  # type: ignore[arg-type]
            ),
            states_expected_between_first_and_last_scrape=(
                int(n * (float(last["t"]) - float(ok[0]["t"])) / self.args.interval) if ok else None  # type: ignore[arg-type]
            ),
            # At the interval the nodes agreed to at the last scrape (the governor may have raised it).
            states_expected_at_agreed_interval=(
                int(n * (float(last["t"]) - float(ok[0]["t"])) / float(last["agreed_interval_s_median"]))  # type: ignore[arg-type]
                if ok and last.get("agreed_interval_s_median")
                else None
            ),
            messages_dropped_total=int(float(last["dropped"])) if ok else None,  # type: ignore[arg-type]
            healthz_ms_p50_p99_max=[ms(pct(rep.healthz, 0.5)), ms(pct(rep.healthz, 0.99)), ms(pct(rep.healthz, 1.0))],
            healthz_n_fail=[len(rep.healthz), rep.healthz_fail],
            # Issue 20: what the governor settled on, sessions torn down as stalled, States shed unparsed.
            interval_factor_per_scrape=[s.get("factor") for s in rep.scrapes],
            agreed_interval_s_median_last=last.get("agreed_interval_s_median"),
            loop_cpu_per_scrape=[s.get("loop_cpu") for s in rep.scrapes],
            stalled_teardowns_first_last=[ok[0].get("stalled"), last.get("stalled")] if ok else None,
            states_shed_before_parse_first_last=[ok[0].get("shed_states"), last.get("shed_states")] if ok else None,
            retention_gaps_first_last=[ok[0].get("gaps"), last.get("gaps")] if ok else None,
            gc_collections_pause_s_first_last=[ok[0].get("gc"), last.get("gc")] if ok else None,
        )
        if self.args.otlp:
            # The governor's share of spans kept (absent: it does not see tracing on), and spans held open.
            out.update(
                span_share_per_scrape=[s.get("span_share") for s in rep.scrapes],
                spans_open_per_scrape=[s.get("spans_open") for s in rep.scrapes],
            )
        return out

    def otlp_summary(
        self,
        window: float,
        cpu: float,
        mem: tuple[float, float],
        w0: dict[str, object] | None,
        w1: dict[str, object] | None,
    ) -> dict[str, object]:
        """--otlp: the receiver's cost and counts, and the exporters' span counters over the same scrapes."""
        out: dict[str, object] = {
            "receiver_cpu_cores": round(cpu / window, 3),
            "receiver_rss_mib_end": round(mem[0], 1),
            "received_in_window": None,
            "between_first_and_last_scrape": None,
        }
        if w0 is not None and w1 is not None:
            got = delta(w0, w1)
            out["received_in_window"] = {
                "spans": got["spans"],
                "spans_per_s": round(float(got["spans"]) / window, 1),  # type: ignore[arg-type]
                "requests": got["requests"],
                "bad_requests": got["bad_requests"],
                "MB": round(float(got["bytes"]) / 1e6, 2),  # type: ignore[arg-type]
                "by_name": got["by_name"],
                "by_kind": got["by_kind"],
            }
        # The rounds in which every replica's scrape completed and the receiver answered: the exporters'
        # counters and the receiver's counts (read just before the round was sent) over the same span.
        rounds = min([len(self.sink_rounds)] + [len(rep.scrapes) for rep in self.replicas])
        good = [
            r
            for r in range(rounds)
            if self.sink_rounds[r] is not None and all(rep.scrapes[r].get("spans") for rep in self.replicas)
        ]
        if len(good) < 2:
            return out
        r0, r1 = good[0], good[-1]
        seconds = float(self.replicas[0].scrapes[r1]["t"]) - float(self.replicas[0].scrapes[r0]["t"])  # type: ignore[arg-type]
        exp: dict[str, object] = {}
        for rep in self.replicas:
            exp = add(exp, delta(rep.scrapes[r0]["spans"], rep.scrapes[r1]["spans"]))  # type: ignore[arg-type]
        got = delta(self.sink_rounds[r0], self.sink_rounds[r1])  # type: ignore[arg-type]

        def split(family: str) -> dict[str, object]:
            per: dict[str, float] = exp.get(family, {})  # type: ignore[assignment]
            return {"total": int(sum(per.values())), **{k: int(v) for k, v in sorted(per.items())}}

        def total(family: str) -> int:
            return int(sum(exp.get(family, {}).values()))  # type: ignore[attr-defined]

        exported = total("spans_exported")
        out["between_first_and_last_scrape"] = {
            "seconds": round(seconds, 1),
            "received_spans": got["spans"],
            "received_spans_per_s": round(float(got["spans"]) / seconds, 1) if seconds else None,  # type: ignore[arg-type]
            "received_requests": got["requests"],
            "received_by_name": got["by_name"],
            # Summed over every node's label set (and over the replicas).
            "libp2p_exporter_spans_started_total": split("spans_started"),
            "libp2p_exporter_spans_sampled_out_total": split("spans_sampled_out"),
            "libp2p_exporter_spans_dropped_total": split("spans_dropped"),
            "libp2p_exporter_spans_exported_total": exported,
            "libp2p_exporter_spans_exported_per_s": round(exported / seconds, 1) if seconds else None,
            "libp2p_exporter_spans_export_failed_total": total("spans_export_failed"),
            "libp2p_exporter_span_exports_total": split("span_exports"),
            "spans_open_at_last_scrape": int(
                sum(float(str(rep.scrapes[r1].get("spans_open") or 0)) for rep in self.replicas)
            ),
        }
        return out

    def summary(
        self, window: float, cpu_e: list[float], cpu_g: float, self_cpu: float, mems: list[tuple[float, float]]
    ) -> dict[str, object]:
        per = [
            self.replica_summary(rep, window, cpu, rss, hwm)
            for rep, cpu, (rss, hwm) in zip(self.replicas, cpu_e, mems, strict=True)
        ]
        out: dict[str, object] = {"window_s": round(window, 1), "aborted": self.aborted or None}
        if self.k == 1:
            out.update(per[0])
        else:
            rounds = min(len(rep.scrapes) for rep in self.replicas)
            up_rounds = [
                None
                if any("error" in rep.scrapes[r] for rep in self.replicas)
                else sum(int(rep.scrapes[r]["up"]) for rep in self.replicas)  # type: ignore[call-overload]
                for r in range(rounds)
            ]

            def total(key: str) -> int | None:
                vals = [p[key] for p in per]
                return None if any(v is None for v in vals) else sum(vals)  # type: ignore[misc, arg-type]

            out.update(
                exporter_cpu_cores=round(sum(cpu_e) / window, 3),
                rss_mib_end=round(sum(rss for rss, _ in mems), 1),
                scrape_rounds=rounds,
                scrape_s_max=max((p["scrape_s_max"] for p in per if p["scrape_s_max"] is not None), default=None),
                up_per_round=up_rounds,
                every_node_up_at_every_scrape=bool(rounds) and all(u == self.n for u in up_rounds),
                states_accepted_between_first_and_last_scrape=total("states_accepted_between_first_and_last_scrape"),
                states_expected_between_first_and_last_scrape=total("states_expected_between_first_and_last_scrape"),
                messages_dropped_total=total("messages_dropped_total"),
                replica=per,
            )
        out.update(
            loadgen_cpu_cores=round(cpu_g / window, 3),
            harness_cpu_cores=round(self_cpu / window, 3),
            probe_ms_p50_p99_max=[ms(pct(self.probes, 0.5)), ms(pct(self.probes, 0.99)), ms(pct(self.probes, 1.0))],
            probe_n_fail=[len(self.probes), self.probe_fail],
            # Per sweep: seconds, nodes answered, nodes up, stalled teardowns, States shed, States accepted and
            # retention gaps (summed over nodes).
            probe_all_sweeps=[[round(t, 1), *rest] for t, *rest in self.sweeps] if self.args.probe_all else None,
            probe_all_states_accepted_per_s=self.sweep_rate(5),
            probe_all_shed_per_s=self.sweep_rate(4),
            probe_all_ms_p50_p99_max=[
                ms(pct(self.sweep_probes, 0.5)),
                ms(pct(self.sweep_probes, 0.99)),
                ms(pct(self.sweep_probes, 1.0)),
            ]
            if self.args.probe_all
            else None,
            probe_all_n_fail=[len(self.sweep_probes), self.sweep_fail] if self.args.probe_all else None,
            # Per delay D: probes sent D ms after a send tick; the share that showed that tick's State,
            # and the share that showed it AND answered within 100 ms (a slow /probe may show a State
            # that arrived long after the tick).
            fresh_by_delay_ms={
                str(d): {
                    "probes": len(v),
                    "visible": round(sum(1 for ok, _ in v if ok) / len(v), 3) if v else None,
                    "visible_answered_100ms": round(sum(1 for ok, t in v if ok and t <= 0.1) / len(v), 3)
                    if v
                    else None,
                }
                for d, v in self.fresh.items()
            },
            age_at_probe_answer_ms_p50_p99=[
                None if not self.age_ms else round(statistics.median(self.age_ms)),
                None if not self.age_ms else round(pct(self.age_ms, 0.99) or 0),
            ],
        )
        return out


def delta(a: dict[str, object], b: dict[str, object]) -> dict[str, object]:
    """b - a for nested dicts of counts (a key missing in a counts as 0); other values are taken from b."""
    out: dict[str, object] = {}
    for key, vb in b.items():
        va = a.get(key)
        if isinstance(vb, dict):
            out[key] = delta(va if isinstance(va, dict) else {}, vb)
        elif isinstance(vb, int | float) and not isinstance(vb, bool):
            out[key] = vb - (va if isinstance(va, int | float) else 0)
        else:
            out[key] = vb
    return out


def add(a: dict[str, object], b: dict[str, object]) -> dict[str, object]:
    """a + b for nested dicts of counts."""
    out = dict(a)
    for key, vb in b.items():
        va = out.get(key)
        if isinstance(vb, dict):
            out[key] = add(va if isinstance(va, dict) else {}, vb)
        else:
            out[key] = (va if isinstance(va, int | float) else 0) + vb  # type: ignore[operator]
    return out


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
    ap.add_argument("--replicas", type=int, default=1, help="K sharded exporters (--shard I --total-shards K)")
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window per run")
    ap.add_argument("--warmup", type=float, default=10.0, help="after every node is up (or --up-timeout)")
    ap.add_argument(
        "--warmup-scrapes",
        action="store_true",
        help="scrape (or probe) every --scrape-every during the warm-up too, unrecorded",
    )
    ap.add_argument("--up-timeout", type=float, default=90.0, help="give up waiting for all nodes up after this")
    ap.add_argument("--scrape-every", type=float, default=15.0)
    ap.add_argument("--scrape-timeout", type=float, default=120.0)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between a node's States")
    ap.add_argument(
        "--retention", type=float, default=10.0, help="seconds the nodes keep closed connections (and declare)"
    )
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--fresh-delays", default="25,50,100,250", help="ms after a send tick to probe")
    ap.add_argument("--max-rss-mib", type=float, default=4096.0)
    ap.add_argument(
        "--exporter-args",
        default="",
        help="extra exporter flags, e.g. '--histograms.profile lean' or '--metrics.nodes none --ingest.budget 0.8'",
    )
    ap.add_argument(
        "--probe-all",
        action="store_true",
        help="probe every node once per --scrape-every through /probe (with --exporter-args '--metrics.nodes none')",
    )
    ap.add_argument("--probe-threads", type=int, default=8, help="--probe-all: probes in flight at once")
    ap.add_argument(
        "--otlp",
        action="store_true",
        help="tracing on: an OTLP/HTTP receiver (bench/otlp_sink.py) as a process of its own, the exporter "
        "exporting every span to it (default sampling)",
    )
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    # SIGTERM ends a run the way Ctrl-C does: the cleanup stops the generator and the exporters.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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
