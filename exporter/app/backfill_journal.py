"""Scrape journals in a backfill: the exporter's own health, as it measured it while recording.

Live mode with ``--record`` keeps a journal of its scrapes (``sinks/scrape_journal.py``) beside the
recordings. Backfilling the recording directory writes, at each journaled scrape's time, what that
scrape measured: ``up`` (the body was ready within the scraper's timeout), the
``libp2p_exporter_scrape_duration_seconds`` the body carried, and the pubsub collector's families
when one ran. Nothing is written for a time nobody scraped: a capture made by other software, or
a recording without a journal, leaves those series empty rather than invented.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.mappers.pubsub import collect_intake
from exporter.model.catalogue import Family, Writer
from exporter.pipeline.traces import COLLECTOR_ERRORS, TraceIntakeStats
from exporter.sinks.openmetrics_file import TimestampedOpenMetrics
from exporter.sinks.prometheus import write_scrape_duration
from exporter.sinks.scrape_journal import SUFFIX, read_journal

SCOPE = "exporter"  # the writer's scope for the journal's series


@dataclass
class JournalResult:
    files: list[Path]
    scrapes: int = 0
    written: int = 0
    up: int = 0
    repeated: int = 0  # entries at or before an instant already written (two files of one time)
    damaged: dict[Path, int] = field(default_factory=dict)


def find_journals(args: list[str]) -> list[Path]:
    """Journals among the arguments: ``*.scrapes.jsonl`` files, and those under directories."""
    out: list[Path] = []
    for arg in args:
        path = Path(arg.partition("=")[2]) if "=" in arg and not Path(arg).exists() else Path(arg)
        if path.is_dir():
            out += sorted(p for p in path.rglob(f"*{SUFFIX}") if p.is_file())
        elif path.name.endswith(SUFFIX) and path.is_file():
            out.append(path)
    return out


UP = Family("up", "gauge", "1 when the exporter answered the scrape within the scraper's timeout.")


def _write(entry: dict[str, Any], out: Writer) -> None:
    """One journaled scrape's series, written by the code live mode writes them with."""
    out.gauge(UP, entry["up"])
    if "scrape_duration_seconds" in entry:
        write_scrape_duration(out, entry["scrape_duration_seconds"])
    collector = entry.get("collector")
    if collector is not None:
        intake = TraceIntakeStats(collecting=True)
        c = intake.collector
        c.streams_active = collector.get("streams", 0)
        c.streams_accepted = collector.get("accepted", 0)
        c.streams_refused = collector.get("refused", 0)
        c.batches = collector.get("batches", 0)
        errors = collector.get("errors", {})
        c.errors.update({reason: errors[reason] for reason in COLLECTOR_ERRORS if reason in errors})
        collect_intake(out, intake)


def _entries(path: Path, result: JournalResult) -> Iterator[dict[str, Any]]:
    read = read_journal(path)
    if read.damaged:
        result.damaged[path] = read.damaged
    yield from read.entries


def collect_journals(files: list[Path], writer: TimestampedOpenMetrics) -> JournalResult:
    """Every journaled scrape, in time order, at its own instant."""
    result = JournalResult(files)
    for entry in heapq.merge(*(_entries(p, result) for p in files), key=lambda e: e["ts"]):
        result.scrapes += 1
        last = writer.last_ts(SCOPE)
        if last is not None and entry["ts"] <= last:
            result.repeated += 1
            continue
        at = writer.instant(SCOPE, entry["ts"], vanish=False)
        _write(entry, at)
        at.close()
        result.written += 1
        result.up += entry["up"]
    return result


def journal_report(result: JournalResult) -> list[str]:
    lines = [f"{path}: skipped {n} line(s) that are not a journal entry" for path, n in result.damaged.items()]
    if result.repeated:
        lines.append(f"scrape journal: {result.repeated} scrape(s) at or before one already written, skipped")
    lines.append(
        f"scrape journal: {len(result.files)} file(s), {result.written} scrapes written "
        f"({result.up} answered in time, {result.written - result.up} not)"
    )
    return lines
