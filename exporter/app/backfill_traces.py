"""Pubsub trace files in a backfill: gossipsub history at the times its events happened.

A trace file (JSON tracer, PB tracer, ``traced`` gzip) is a stream of events, not of snapshots, so
there is no State instant to write at. The backfill does what a Prometheus scraping a live exporter
would see: the pubsub mapper (``mappers/pubsub.py``, the one live mode uses) takes the events in
time order, and its families are written every ``step`` of trace time, each instant counting every
event stamped at or before it. The mapper's message window runs on trace time too, so propagation
delay and reach come out as they would have live, whenever the backfill runs.

Files are merged by event timestamp (each file is in its tracer's order; ``traced`` and collector
files interleave batches of several nodes, up to a batch window out of order, so events are put
back in order within ``REORDER_MS``). An event later than that, stamped before an instant already
written, is counted at the next one, as a live collector counts a late batch, and the summary says how many.
A stretch of over ``GAP_MS`` with no events at all (tracing stopped) is not filled with copies of
the last values; the summary names it.

The same events often exist twice: a node's own JSON or PB file and the ``traced`` files of the
collector it also streamed to. An event equal, byte for byte, to one another file gave (they have
the same nanosecond timestamp, so they meet in the merge) is skipped and counted, never counted twice.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exporter.app.pubsub import pubsub_metrics
from exporter.model.labels import Cardinality
from exporter.pipeline.traces import TraceIntakeStats
from exporter.protocol.framing import SegmentError
from exporter.protocol.pubsub_codec import TraceEvent
from exporter.settings import Pubsub
from exporter.sinks.openmetrics_file import TimestampedOpenMetrics
from exporter.sources.pubsub_trace import ReadStats, TraceFileError, iter_trace_file

SCOPE = "pubsub"  # the writer's scope for the trace families (they carry no introspected node)
GAP_MS = 10 * 60 * 1000  # quiet longer than Prometheus' 5-minute lookback twice over: tracing had stopped
DEFAULT_STEP_S = 15.0  # a common scrape interval
REORDER_MS = 5_000  # go's remote tracer batches for a second; a collector file interleaves nodes by batch
DEDUP_WINDOW_MS = 10_000  # how far apart in the merge two copies of an event may arrive (traced batches)
DEDUP_MAX = 1_000_000  # events remembered for that, at most
TRACE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".pb", ".gz")  # what a directory is searched for


@dataclass
class TraceInput:
    path: Path
    size: int
    stats: ReadStats = field(default_factory=ReadStats)


@dataclass
class TraceResult:
    files: list[TraceInput]
    step_ms: int
    events: int = 0
    late: int = 0  # events stamped at or before an instant already written: counted at the next
    repeated: int = 0  # events another file already gave: skipped
    instants: int = 0
    nodes: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # quiet stretches not written (ms)


def expand_traces(args: list[str]) -> list[TraceInput]:
    """Trace files, or directories of them (every regular file under it)."""
    out: list[TraceInput] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.endswith(TRACE_SUFFIXES) and p.name[0] != "."
            )
            if not found:
                raise TraceFileError(f"no trace files ({', '.join(TRACE_SUFFIXES)}) under {path}")
        elif path.is_file():
            found = [path]
        else:
            raise TraceFileError(f"no such trace file: {path}")
        out += [TraceInput(p, p.stat().st_size) for p in found]
    return out


def _events(
    src: TraceInput, index: int, intake: TraceIntakeStats, advance: Callable[[int], None]
) -> Iterator[tuple[int, int, TraceEvent]]:
    done = 0

    def position(at: int) -> None:
        nonlocal done
        advance(at - done)
        done = at

    for item in iter_trace_file(src.path, position=position):
        src.stats.note(item)
        if isinstance(item, SegmentError):
            intake.file_errors[item.reason] += 1
            continue
        yield item.timestamp, index, item
    advance(src.size - done)


def _reordered(items: Iterator[tuple[int, int, TraceEvent]], window_ns: int) -> Iterator[tuple[int, int, TraceEvent]]:
    """``items`` in timestamp order, for any item at most ``window_ns`` behind the newest seen."""
    held: list[tuple[int, int, int, TraceEvent]] = []
    newest = 0
    for n, (ns, index, event) in enumerate(items):
        newest = max(newest, ns)
        heapq.heappush(held, (ns, index, n, event))  # n: equal stamps keep their order, events never compared
        while held and held[0][0] < newest - window_ns:
            ns0, index0, _, event0 = heapq.heappop(held)
            yield ns0, index0, event0
    while held:
        ns0, index0, _, event0 = heapq.heappop(held)
        yield ns0, index0, event0


def _ceil(ts_ms: int, step_ms: int) -> int:
    """The first instant of the step grid at or after ``ts_ms``."""
    return -(-ts_ms // step_ms) * step_ms


def collect_traces(
    files: list[TraceInput],
    writer: TimestampedOpenMetrics,
    cardinality: Cardinality,
    settings: Pubsub,
    step_ms: int,
    advance: Callable[[int], None],
) -> TraceResult:
    """Feed every file's events to one pubsub mapper in time order, writing its families every step."""
    now_ns = 0
    intake = TraceIntakeStats(files=len(files))
    metrics = pubsub_metrics(cardinality, settings, intake, clock=lambda: now_ns / 1e9)
    result = TraceResult(files, step_ms)

    def write(at_ms: int) -> None:
        at = writer.instant(SCOPE, at_ms)
        metrics.collect(at)
        at.close()
        result.instants += 1

    streams = [_events(src, i, intake, advance) for i, src in enumerate(files)]
    seen: dict[tuple[int, int], int] = {}  # (timestamp, hash of the event) -> the file that gave it
    recent: deque[tuple[int, int]] = deque()
    due: int | None = None  # the next instant to write; everything stamped at or before it is in
    written: int | None = None
    merged = heapq.merge(*streams, key=lambda t: t[0])
    for ns, index, event in _reordered(merged, REORDER_MS * 1_000_000):
        ts_ms = ns // 1_000_000
        if len(files) > 1:
            key = (ns, hash(event.SerializeToString(deterministic=True)))
            if seen.setdefault(key, index) != index:
                result.repeated += 1
                continue
            recent.append(key)
            while recent and (recent[0][0] < ns - DEDUP_WINDOW_MS * 1_000_000 or len(recent) > DEDUP_MAX):
                seen.pop(recent.popleft(), None)
        if due is None:
            due = _ceil(ts_ms, step_ms)
        if ts_ms > due:
            write(due)
            written = due
            due += step_ms
            if ts_ms - due > GAP_MS:
                result.gaps.append((written, ts_ms))
                due = _ceil(ts_ms, step_ms)
            while ts_ms > due:  # quiet steps inside the gap limit: a scrape would have seen them
                write(due)
                written = due
                due += step_ms
        if written is not None and ts_ms <= written:
            result.late += 1
        now_ns = max(now_ns, event.timestamp)  # the message window's clock
        metrics.ingest(event)
        result.events += 1
    if due is not None:
        metrics.flush()  # the input is over: every followed message's reach is known now
        write(due)
    result.nodes = len(metrics.nodes)
    return result


def trace_report(result: TraceResult, iso: Callable[[int], str]) -> list[str]:
    """Notices and one summary line about the trace files."""
    lines = []
    for src in result.files:
        if src.stats.errors:
            kinds = ", ".join(f"{n} {reason}" for reason, n in sorted(src.stats.errors.items()))
            lines.append(f"{src.path}: skipped {sum(src.stats.errors.values())} damaged stretch(es) ({kinds})")
        if src.stats.events == 0:
            lines.append(f"{src.path}: no trace events, nothing to write")
    if result.repeated:
        lines.append(f"pubsub: {result.repeated} event(s) also in an earlier file (the same event twice), skipped")
    if result.late:
        lines.append(
            f"pubsub: {result.late} event(s) stamped before an instant already written, counted at the next one"
        )
    for lo, hi in result.gaps:
        lines.append(f"pubsub: no trace events from {iso(lo)} to {iso(hi)}: nothing written in between")
    lines.append(
        f"pubsub: {len(result.files)} trace file(s), {result.events} events of {result.nodes} traced node(s), "
        f"written every {result.step_ms / 1000:g} s at {result.instants} instant(s)"
    )
    return lines
