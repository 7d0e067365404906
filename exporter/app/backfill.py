"""``libp2p-exporter backfill``: captures and recordings become Prometheus history at their own times.

Each file goes through the pipeline ``replay`` uses (one hub with the standard mappers, the Prometheus sink's
families); after every accepted State the node's exposition is kept at that State's ``instant_ts``.
The result is timestamped OpenMetrics (exporter.sinks.openmetrics_file), which ``promtool tsdb
create-blocks-from openmetrics`` turns into TSDB blocks, or which is left as it is for a remote TSDB.

Files of one node are read one after another in order of their first State; a later file's States
that an earlier file already covered are skipped (and reported), so overlapping recordings neither
repeat events nor send a series back in time. Several nodes are merged by time, as live mode sees
them, so the hub-wide series stay in order too.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from exporter.app.argtypes import Parser, positive_float
from exporter.app.backfill_journal import JournalResult, collect_journals, find_journals, journal_report
from exporter.app.backfill_traces import DEFAULT_STEP_S, TraceResult, collect_traces, expand_traces, trace_report
from exporter.app.flags import (
    add_limit_flags,
    add_pubsub_file_flag,
    add_pubsub_mapper_flags,
    limits_from_args,
    pubsub_files_from_args,
)
from exporter.app.progress import Progress
from exporter.app.runtime import build_hub, cardinality_of
from exporter.model.catalogue import Labelled, Only, Writer
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import DEFAULT_MAX_SEGMENT, SegmentError
from exporter.settings import Limits
from exporter.sinks.openmetrics_file import TimestampedOpenMetrics, WriteStats
from exporter.sinks.scrape_journal import SUFFIX as JOURNAL_SUFFIX
from exporter.sources.capture import CaptureError, iter_capture
from exporter.sources.pubsub_recording import find_recorded
from exporter.sources.pubsub_trace import TraceFileError

log = logging.getLogger("libp2p-exporter")

PROG = "libp2p-exporter backfill"
CAPTURE_SUFFIXES = (".libp2p.trace", ".mock")
# A recording's rotation stamp (exporter.sources.recording): <name>-<UTC time>-<seq>.libp2p.trace
_RECORDING_STAMP = re.compile(r"-\d{8}T\d{6}Z-\d{4}$")
# Hub-wide series that describe the data (kept), as opposed to the exporter process (dropped:
# build info, how many nodes it holds, how long a scrape took mean nothing at a State's instant).
HUB_SERIES = frozenset({"libp2p_exporter_label_values_folded"})
PROCESS_SERIES = frozenset(
    {"libp2p_exporter_build_info", "libp2p_exporter_nodes", "libp2p_exporter_scrape_duration_seconds"}
)


class BackfillError(Exception):
    """A user-facing failure: one line, and the exit code to leave with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class InputFile:
    path: Path
    node: str
    size: int
    first_ts: int | None = None
    states: int = 0
    written: int = 0
    overlapped: int = 0  # States an earlier file of the node already covered
    overlap_range: tuple[int, int] | None = None
    behind: int = 0  # accepted States not after the node's last written one (its clock went back)
    untimed: int = 0  # States without instant_ts
    damaged: int = 0  # stretches of the file skipped

    def note_overlap(self, ts: int) -> None:
        self.overlapped += 1
        lo, hi = self.overlap_range or (ts, ts)
        self.overlap_range = (min(lo, ts), max(hi, ts))


@dataclass(slots=True)
class Block:
    """A State with the messages that came before it in its file (or a file's trailing messages)."""

    key: int  # where it sorts: the State's instant_ts, or the file's last one for trailing messages
    source: InputFile
    msgs: list[pb.ServerMessage]
    errors: list[SegmentError]
    nbytes: int
    has_state: bool


@dataclass
class Result:
    files: list[InputFile]
    stats: WriteStats
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> reason -> States
    blocks: list[dict[str, Any]] = field(default_factory=list)  # each block's meta.json
    vanished_zeros: int = 0
    traces: TraceResult | None = None
    journals: JournalResult | None = None


def node_of(path: Path) -> str:
    """The node label for a file, as ``replay`` names it, without a recording's rotation stamp."""
    return _RECORDING_STAMP.sub("", path.name.split(".")[0]) or path.name


def expand(args: list[str], node: str | None) -> list[InputFile]:
    """``FILE``, ``NAME=FILE`` or a directory (its captures, recursively) into input files."""
    out: list[InputFile] = []
    for arg in args:
        name, path = node, Path(arg)
        if not path.exists() and "=" in arg:
            label, _, rest = arg.partition("=")
            name, path = label or node, Path(rest)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES))
            if not found and not any(path.rglob(f"*{JOURNAL_SUFFIX}")) and not find_recorded([arg]):
                raise BackfillError(f"no capture files ({', '.join(CAPTURE_SUFFIXES)}) under {path}")
        elif path.name.endswith(JOURNAL_SUFFIX) and path.is_file():
            continue  # a scrape journal (backfill_journal.py)
        elif path.is_file():
            found = [path]
        else:
            raise BackfillError(f"no such file: {path}")
        for p in found:
            out.append(InputFile(p, name or node_of(p), p.stat().st_size))
    return out


def _first_state_ts(path: Path, max_segment: int) -> int | None:
    for item in iter_capture(path, max_segment=max_segment):
        if not isinstance(item, SegmentError) and item.WhichOneof("payload") == "state":
            return item.state.instant_ts
    return None


def file_blocks(src: InputFile, max_segment: int) -> Iterator[Block]:
    msgs: list[pb.ServerMessage] = []
    errors: list[SegmentError] = []
    nbytes = 0
    key = 0
    for item in iter_capture(src.path, max_segment=max_segment):
        if isinstance(item, SegmentError):
            errors.append(item)
            src.damaged += 1
            nbytes += item.skipped
            continue
        msgs.append(item)
        nbytes += item.ByteSize() + 8  # checksum and length before each payload
        if item.WhichOneof("payload") == "state":
            src.states += 1
            key = item.state.instant_ts
            yield Block(key, src, msgs, errors, nbytes, True)
            msgs, errors, nbytes = [], [], 0
    if msgs or errors:
        yield Block(key, src, msgs, errors, nbytes, False)


def node_blocks(files: list[InputFile], max_segment: int) -> Iterator[Block]:
    """One node's files in order; what an earlier file already covered is left out."""
    covered: int | None = None
    for src in files:
        last: int | None = None
        for block in file_blocks(src, max_segment):
            if covered is not None and block.key <= covered:
                if block.has_state:
                    src.note_overlap(block.key)
                # Damage is counted even where the data is not used, as replay counts it.
                yield Block(block.key, src, [], block.errors, block.nbytes, False)
                continue
            if block.has_state:
                last = block.key if last is None else max(last, block.key)
            yield block
        if last is not None:
            covered = last if covered is None else max(covered, last)


def write_hub_series(hub: Hub, out: Writer) -> None:
    """The hub-wide series worth keeping at an instant (see HUB_SERIES)."""
    kept = Only(out, HUB_SERIES)
    hub.write_traces(kept)
    hub.write_globals(kept)


def write_node(hub: Hub, name: str, out: Writer) -> None:
    """One node's series, with its labels, as a scrape of it would show them."""
    node = hub.nodes[name]
    with node.lock:
        hub.write_node(node, Labelled(out, node.base_labels))


def collect(
    files: list[InputFile],
    writer: TimestampedOpenMetrics,
    hub: Hub,
    progress: Progress,
    max_segment: int = DEFAULT_MAX_SEGMENT,
) -> Result:
    """Run every file through the hub and keep each accepted State's exposition at its instant."""
    for src in files:
        src.first_ts = _first_state_ts(src.path, max_segment)
    by_node: dict[str, list[InputFile]] = {}
    for src in sorted(files, key=lambda f: (f.first_ts is None, f.first_ts or 0)):  # ties: as given
        by_node.setdefault(src.node, []).append(src)
    streams = [node_blocks(group, max_segment) for group in by_node.values()]
    for block in heapq.merge(*streams, key=lambda b: b.key):
        src = block.source
        if block.errors:
            hub.errors(src.node, block.errors)
        update = None
        for msg in block.msgs:
            update = hub.ingest(src.node, msg) or update
        progress.advance(block.nbytes, 0)
        if not block.has_state or update is None:
            continue  # no State, or one the hub dropped (a duplicate, or out of order)
        ts = update.instant_ts  # Hub.ingest returns the accepted StateStep
        last = writer.last_ts(src.node)
        if not ts:
            src.untimed += 1
            continue
        if last is not None and ts <= last:
            src.behind += 1
            continue
        at = writer.instant(src.node, ts)
        write_node(hub, src.node, at)
        at.close()
        src.written += 1
        progress.advance(0, 1)
        shared = writer.last_ts("")
        if shared is None or ts > shared:
            at = writer.instant("", ts)
            write_hub_series(hub, at)
            at.close()
    result = Result(files, WriteStats(), vanished_zeros=writer.vanished_zeros)
    for name, node in sorted(hub.nodes.items()):
        if node.dropped_snapshots:
            result.dropped[name] = dict(node.dropped_snapshots)
    return result


def check_output(output: str, fmt: str) -> None:
    """Never write over data: the blocks directory must be new or empty, the file must be new."""
    if output == "-" and fmt == "openmetrics":
        return
    path = Path(output)
    if fmt == "blocks":
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BackfillError(f"{path} exists and is not an empty directory; choose a new one", 2)
        if path.exists():  # found out now, before the work, not from promtool's own words at the end
            try:
                with tempfile.TemporaryFile(dir=path):
                    pass
            except OSError as exc:
                raise BackfillError(f"cannot write into {path}: {exc.strerror or exc}", 2) from exc
    elif path.exists():
        raise BackfillError(f"{path} exists; choose a new file name", 2)


def find_promtool(explicit: str | None) -> str:
    found = shutil.which(explicit or "promtool")
    if found is None:
        hint = "install Prometheus' promtool (Debian: apt install prometheus) or pass --format openmetrics"
        raise BackfillError(f"promtool not found ({explicit or 'on PATH'}): {hint}", 2)
    return found


def run_promtool(promtool: str, source: Path, output: Path) -> list[dict[str, Any]]:
    """Build blocks from the OpenMetrics file; returns each new block's meta.json."""
    output.mkdir(parents=True, exist_ok=True)
    cmd = [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackfillError(f"promtool failed ({proc.returncode}): {lines[-1] if lines else 'no output'}")
    metas = []
    for meta in sorted(output.glob("*/meta.json")):
        metas.append(json.loads(meta.read_text()))
    return metas


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _range(lo: int, hi: int) -> str:
    return f"{_iso(lo)} .. {_iso(hi)} ({(hi - lo) / 1000:.1f} s)"


def report(result: Result, fmt: str, output: str) -> list[str]:
    """What happened, for the user: notices first, then the summary (time range, series, samples, blocks)."""
    lines = []
    for src in result.files:
        if src.damaged:
            lines.append(f"{src.path}: skipped {src.damaged} damaged stretch(es)")
        if src.states == 0:
            lines.append(f"{src.path}: no States, nothing to write")
        if src.overlapped and src.overlap_range:
            lines.append(
                f"{src.path}: {src.overlapped} State(s) of node {src.node} already covered by an earlier file, "
                f"skipped ({_range(*src.overlap_range)})"
            )
        if src.behind:
            lines.append(
                f"{src.path}: {src.behind} State(s) not written: not after the node's last written State "
                "(its clock went back, or it restarted)"
            )
        if src.untimed:
            lines.append(f"{src.path}: {src.untimed} State(s) without instant_ts not written")
    for node, reasons in result.dropped.items():
        said = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(reasons.items()))
        lines.append(f"node {node}: States dropped as live mode drops them: {said}")
    stats = result.stats
    nodes = len({f.node for f in result.files})
    written = sum(f.written for f in result.files)
    if result.files or result.traces is None:
        lines.append(f"backfilled {len(result.files)} file(s) of {nodes} node(s): {written} States written")
    if result.traces is not None:
        lines += trace_report(result.traces, _iso)
    if result.journals is not None:
        lines += journal_report(result.journals)
    if stats.min_ts is not None and stats.max_ts is not None:
        lines.append(f"time range: {_range(stats.min_ts, stats.max_ts)}")
    lines.append(f"series: {stats.series}, samples: {stats.samples}, families: {stats.families}")
    if fmt == "blocks":
        samples = sum(int(m.get("stats", {}).get("numSamples", 0)) for m in result.blocks)
        lines.append(f"blocks: {len(result.blocks)} in {output} (promtool wrote {samples} samples)")
        if samples != stats.samples:
            lines.append(f"warning: promtool wrote {samples} samples of the {stats.samples} in the input")
    else:
        lines.append(f"OpenMetrics written to {'stdout' if output == '-' else output}")
    return lines


def backfill(args: argparse.Namespace, stderr: TextIO | None = None, stdout: TextIO | None = None) -> list[str]:
    """Do the whole job for parsed arguments; raises BackfillError for anything the user must fix."""
    stderr, stdout = stderr or sys.stderr, stdout or sys.stdout
    fmt = args.format
    check_output(args.output, fmt)
    promtool = find_promtool(args.promtool) if fmt == "blocks" else ""
    files = expand(args.files, args.node)
    journals = find_journals(args.files)
    try:
        traces = expand_traces(args.pubsub_files + [str(p) for p in find_recorded(args.files)])
    except TraceFileError as exc:
        raise BackfillError(str(exc)) from exc
    if not files and not traces and not journals:
        raise BackfillError("nothing to backfill: give capture files, recordings or --pubsub.file", 2)
    limits = limits_from_args(args)
    hub = build_hub(cardinality_of(limits))
    extra = {"job": args.job, "instance": args.instance}
    with tempfile.TemporaryDirectory(prefix="libp2p-backfill-") as tmp:
        work = Path(tmp)
        writer = TimestampedOpenMetrics(work, extra_labels={k: v for k, v in extra.items() if v})
        progress = Progress(sum(f.size for f in files) + sum(t.size for t in traces), stderr)
        try:
            result = collect(files, writer, hub, progress, limits.max_segment_bytes)
            if traces:
                step_ms = max(1, round(args.pubsub_step * 1000))
                advance = lambda n: progress.advance(n, 0)  # noqa: E731
                result.traces = collect_traces(
                    traces, writer, hub.cardinality, pubsub_files_from_args(args), step_ms, advance
                )
            if journals:
                result.journals = collect_journals(journals, writer)
        except (CaptureError, TraceFileError) as exc:
            raise BackfillError(str(exc)) from exc
        except OSError as exc:  # a journal that cannot be read
            raise BackfillError(f"cannot read {exc.filename}: {exc.strerror or exc}") from exc
        finally:
            progress.clear()
        if writer.points == 0:
            what = "States with a timestamp" + (" or trace events" if traces else "")
            raise BackfillError(f"no {what} in the input: nothing to backfill")
        if fmt == "openmetrics" and args.output == "-":
            result.stats = writer.write(stdout)
        else:
            target = work / "backfill.om" if fmt == "blocks" else Path(args.output)
            partial = target.with_name(target.name + ".partial")
            progress.phase(f"writing OpenMetrics ({writer.points} samples)")
            try:
                with open(partial, "w", encoding="utf-8") as fh:
                    result.stats = writer.write(fh)
                os.replace(partial, target)
                if fmt == "blocks":
                    progress.phase("building blocks with promtool")
                    result.blocks = run_promtool(promtool, target, Path(args.output))
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise BackfillError(f"cannot write {exc.filename or target}: {exc.strerror or exc}") from exc
    return report(result, fmt, args.output)


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Register ``backfill``."""
    p = sub.add_parser(
        "backfill",
        help="turn captures and recordings into Prometheus TSDB blocks at their own times",
        description="Replays each file through the same pipeline as `replay` and writes the metrics at every "
        "State's own time as OpenMetrics, then builds TSDB blocks with promtool (docs/backfill.md).",
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="[NODE=]FILE",
        help="capture files, recordings, or directories of them (a --record directory brings its scrape journal "
        "and the pubsub collector's traces)",
    )
    p.add_argument("--output", "-o", required=True, help="blocks directory (new or empty), or the OpenMetrics file")
    p.add_argument(
        "--format",
        choices=["blocks", "openmetrics"],
        default="blocks",
        help="blocks (default): run promtool; openmetrics: leave the OpenMetrics file ('-' for stdout)",
    )
    p.add_argument(
        "--node", default=None, help="node label for every file (default: the file name up to its first dot)"
    )
    p.add_argument("--job", default="libp2p-exporter", help="job label, as the rules and dashboards expect it")
    p.add_argument("--instance", default="backfill", help="instance label (default backfill)")
    p.add_argument("--promtool", default=None, help="the promtool binary (default: promtool on PATH)")
    add_limit_flags(p, histograms_default=Limits().histograms_profile)  # as the exporter whose history this fills in
    g = p.add_argument_group("pubsub traces (go-libp2p-pubsub event tracer files; docs/backfill.md)")
    add_pubsub_file_flag(g, "a trace file (JSON tracer, PB tracer or traced gzip) or a directory of them; repeatable")
    g.add_argument(
        "--pubsub.step",
        dest="pubsub_step",
        metavar="SECONDS",
        type=positive_float,
        default=DEFAULT_STEP_S,
        help=f"write the pubsub metrics every this much trace time, as a scrape interval (default {DEFAULT_STEP_S:g})",
    )
    add_pubsub_mapper_flags(g)
    p.add_argument("--log.level", dest="log_level", default="warn", choices=["debug", "info", "warn", "error"])
    p.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    try:
        lines = backfill(args)
    except BackfillError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    out = sys.stderr if args.format == "openmetrics" and args.output == "-" else sys.stdout
    for line in lines:
        print(line, file=out)
    return 0
