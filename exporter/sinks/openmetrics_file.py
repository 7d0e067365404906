"""Timestamped OpenMetrics for backfilling: many expositions in, one file out that promtool accepts.

Each exposition (one node's metrics at one State's ``instant_ts``) is added as it is produced, but
OpenMetrics wants every family written once and every series' points together, in time order
(``promtool tsdb create-blocks-from openmetrics`` rejects a series going back in time). So samples
are kept per series in compact arrays, spilled to run files in a work directory past a bound, and
written grouped at the end: family by family, series group by series group, point by point.

A gauge series that vanishes from a scope's exposition gets one 0 at that instant: a scrape would
have marked it stale, which a text file cannot express, and its last value would otherwise linger
in queries for Prometheus' lookback window (5 minutes).

A counter or histogram series that first appears at an instant gets a 0 at its scope's previous
instant: it was 0 then (nothing counted yet), and without that point increase() and rate() miss
its first counts, as they do for any new series a Prometheus scrapes.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, TextIO

from exporter.model.catalogue import Family, Labels, Writer
from exporter.model.histogram import Histogram
from exporter.sinks.exposition.escape import go_float, help_om, label_pair

HISTOGRAM_TYPES = ("histogram", "gaugehistogram")
_RUN_HEADER = struct.Struct("<IQ")  # series id, points
DEFAULT_SPILL_POINTS = 2_000_000  # about 32 MB of buffered points before a run is written


@lru_cache(maxsize=65536)
def format_ts(ts_ms: int) -> str:
    """``ts_ms`` in seconds, as text that Prometheus' parser turns back into exactly ``ts_ms``.

    Its parser computes ``int64(seconds * 1000)``, truncating: for some values the nearest double
    to ``S.mmm`` times 1000 lands just below the millisecond, so the next double up is written.
    """
    sec, ms = divmod(ts_ms, 1000)
    text = f"{sec}.{ms:03d}"
    value = float(text)
    if int(value * 1000) == ts_ms:
        return text
    while int(value * 1000) < ts_ms:
        value = math.nextafter(value, math.inf)
    return repr(value)


@dataclass(slots=True)
class _Series:
    text: str  # name{labels}
    group: int
    order: tuple[int, float]  # place inside its group: buckets by le, then count, then sum
    gauge: bool  # a plain gauge: gets a 0 when it vanishes
    cumulative: bool  # a counter or histogram: gets a 0 just before it first appears
    ts: array[int] = field(default_factory=lambda: array("q"))
    values: array[float] = field(default_factory=lambda: array("d"))


@dataclass(slots=True)
class _Family:
    name: str
    type: str
    help: str
    groups: list[int] = field(default_factory=list)


@dataclass
class WriteStats:
    families: int = 0
    series: int = 0
    samples: int = 0
    min_ts: int | None = None
    max_ts: int | None = None


def _order(family: _Family, sample_name: str, labels: Mapping[str, str]) -> tuple[int, float]:
    if family.type not in HISTOGRAM_TYPES:
        return (0, 0.0)
    suffix = sample_name[len(family.name) :]
    if suffix == "_bucket":
        return (0, float(labels.get("le", "+Inf")))
    return ({"_count": 1, "_gcount": 1, "_sum": 2, "_gsum": 2}.get(suffix, 3), 0.0)


class TimestampedOpenMetrics:
    """Collects expositions at instants, then writes them as one valid, grouped OpenMetrics text.

    Instants must increase within a scope (a node, or the hub-wide series); ``add`` refuses
    anything else, so every series comes out in time order without a sort.
    """

    def __init__(
        self, workdir: Path, *, extra_labels: Mapping[str, str] | None = None, spill_points: int = DEFAULT_SPILL_POINTS
    ) -> None:
        self.workdir = workdir
        self.extra = dict(extra_labels or {})
        self.spill_points = spill_points
        self._families: dict[str, _Family] = {}
        self._groups: list[list[int]] = []  # group id -> series ids
        self._group_ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._series: list[_Series] = []
        self._series_ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._fast_ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}  # unsorted, without extras
        self._last_ts: dict[str, int] = {}
        self._present: dict[str, set[int]] = {}
        self._buffered = 0
        self._runs: list[tuple[Path, dict[int, tuple[int, int]]]] = []
        self.points = 0
        self.vanished_zeros = 0
        self.birth_zeros = 0

    def last_ts(self, scope: str) -> int | None:
        return self._last_ts.get(scope)

    def instant(self, scope: str, ts_ms: int, *, vanish: bool = True) -> Instant:
        """A writer for one exposition of ``scope`` at ``ts_ms``; ``close()`` it when written.

        ``vanish=False``: a gauge missing here was not measured this time (a failed scrape has no
        duration), not gone: it gets no 0.
        """
        last = self._last_ts.get(scope)
        if last is not None and ts_ms <= last:
            raise ValueError(f"{scope}: instant {ts_ms} is not after {last}")
        self._last_ts[scope] = ts_ms
        return Instant(self, scope, ts_ms, last, vanish)

    def _sample(
        self, at: Instant, family: Family, name: str, labels: Labels | None, value: float, le: str | None = None
    ) -> None:
        # Label order is fixed per call site, so the unsorted items find a known series without
        # sorting or merging; a miss goes through the canonical (sorted) key.
        key = (name, (tuple(labels.items()) if labels else ()) + ((("le", le),) if le is not None else ()))
        sid = self._fast_ids.get(key)
        series = self._series
        if sid is None:
            known = len(series)
            full = dict(labels) if labels else {}
            if le is not None:
                full["le"] = le
            full.update(self.extra)
            sid = self._series_id(self._family(family), name, full)
            self._fast_ids[key] = sid
            if sid >= known and at.last is not None and series[sid].cumulative:
                self._append(sid, at.last, 0.0)
                self.birth_zeros += 1
        if sid in at.present:
            return  # a repeated sample in one exposition: the first one stands
        at.present.add(sid)
        one = series[sid]
        one.ts.append(at.ts_ms)
        one.values.append(float(value))

    def _close(self, at: Instant) -> int:
        present, scope, ts_ms, vanish = at.present, at.scope, at.ts_ms, at.vanish
        self._buffered += len(present)
        self.points += len(present)
        for sid in self._present.get(scope, set()) - present if vanish else ():
            if self._series[sid].gauge:
                self._append(sid, ts_ms, 0.0)
                self.vanished_zeros += 1
        self._present[scope] = present
        if self._buffered >= self.spill_points:
            self._spill()
        return len(present)

    def _family(self, family: Family) -> _Family:
        fam = self._families.get(family.name)
        if fam is None:
            fam = _Family(family.name, family.type, family.help)
            self._families[family.name] = fam
        return fam

    def _series_id(self, family: _Family, name: str, labels: dict[str, str]) -> int:
        key = (name, tuple(sorted(labels.items())))
        sid = self._series_ids.get(key)
        if sid is not None:
            return sid
        grouped = {k: v for k, v in labels.items() if k != "le"} if family.type in HISTOGRAM_TYPES else labels
        gkey = (family.name, tuple(sorted(grouped.items())))
        gid = self._group_ids.get(gkey)
        if gid is None:
            gid = len(self._groups)
            self._group_ids[gkey] = gid
            self._groups.append([])
            family.groups.append(gid)
        text = name + ("{" + ",".join(label_pair(k, v) for k, v in labels.items()) + "}" if labels else "")
        gauge = family.type == "gauge" and not family.name.endswith("_info")
        cumulative = family.type in ("counter", "histogram")
        sid = len(self._series)
        self._series.append(_Series(text, gid, _order(family, name, labels), gauge, cumulative))
        self._series_ids[key] = sid
        self._groups[gid].append(sid)
        return sid

    def _append(self, sid: int, ts_ms: int, value: float) -> None:
        series = self._series[sid]
        series.ts.append(ts_ms)
        series.values.append(value)
        self._buffered += 1
        self.points += 1

    def _spill(self) -> None:
        """Move every buffered point to a run file; the index says where each series' points are."""
        path = self.workdir / f"run-{len(self._runs):05d}.bin"
        index: dict[int, tuple[int, int]] = {}
        with open(path, "wb") as fh:
            for sid, series in enumerate(self._series):
                n = len(series.ts)
                if not n:
                    continue
                index[sid] = (fh.tell(), n)
                fh.write(_RUN_HEADER.pack(sid, n))
                fh.write(series.ts.tobytes())
                fh.write(series.values.tobytes())
                series.ts = array("q")
                series.values = array("d")
        self._runs.append((path, index))
        self._buffered = 0

    def _points(self, sid: int, runs: Sequence[BinaryIO]) -> tuple[array[int], array[float]]:
        ts, values = array("q"), array("d")
        for (_, index), fh in zip(self._runs, runs):
            at = index.get(sid)
            if at is None:
                continue
            fh.seek(at[0])
            got_sid, n = _RUN_HEADER.unpack(fh.read(_RUN_HEADER.size))
            if got_sid != sid or n != at[1]:
                raise RuntimeError(f"run file {fh.name} is corrupt at series {sid}")
            ts.frombytes(fh.read(8 * n))
            values.frombytes(fh.read(8 * n))
        series = self._series[sid]
        ts.extend(series.ts)
        values.extend(series.values)
        return ts, values

    def write(self, out: TextIO) -> WriteStats:
        """Every family once, each series group's points in time order, then ``# EOF``."""
        stats = WriteStats()
        runs = [open(path, "rb") for path, _ in self._runs]  # noqa: SIM115 - closed below
        try:
            for fam in self._families.values():
                if not fam.groups:
                    continue
                stats.families += 1
                out.write(f"# TYPE {fam.name} {fam.type}\n")
                if fam.help:
                    out.write(f"# HELP {fam.name} {help_om(fam.help)}\n")
                for gid in fam.groups:
                    self._write_group(out, gid, runs, stats)
        finally:
            for fh in runs:
                fh.close()
        out.write("# EOF\n")
        return stats

    def _write_group(self, out: TextIO, gid: int, runs: Sequence[BinaryIO], stats: WriteStats) -> None:
        members = sorted(self._groups[gid], key=lambda sid: self._series[sid].order)
        points = {sid: self._points(sid, runs) for sid in members}
        stats.series += len(members)
        instants = sorted({t for ts, _ in points.values() for t in ts})
        if instants:
            stats.min_ts = instants[0] if stats.min_ts is None else min(stats.min_ts, instants[0])
            stats.max_ts = instants[-1] if stats.max_ts is None else max(stats.max_ts, instants[-1])
        cursor = dict.fromkeys(members, 0)
        for t in instants:
            stamp = format_ts(t)
            for sid in members:
                ts, values = points[sid]
                i = cursor[sid]
                if i < len(ts) and ts[i] == t:
                    out.write(f"{self._series[sid].text} {go_float(values[i])} {stamp}\n")
                    cursor[sid] = i + 1
                    stats.samples += 1
        for sid in members:
            if cursor[sid] != len(points[sid][0]):
                raise RuntimeError(f"series {self._series[sid].text}: points out of time order")


class Instant(Writer):
    """One exposition of one scope at one instant, written through the ``Writer`` interface."""

    __slots__ = ("last", "out", "present", "scope", "ts_ms", "vanish")

    def __init__(self, out: TimestampedOpenMetrics, scope: str, ts_ms: int, last: int | None, vanish: bool) -> None:
        self.out = out
        self.scope = scope
        self.ts_ms = ts_ms
        self.last = last  # the scope's previous instant
        self.vanish = vanish
        self.present: set[int] = set()

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self.out._sample(self, family, family.name, labels, value)

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self.out._sample(self, family, family.name + "_total", labels, value)

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        name = family.name
        for le, count in hist.cumulative():
            self.out._sample(self, family, name + "_bucket", labels, count, le)
        g = "_g" if family.type == "gaugehistogram" else "_"
        self.out._sample(self, family, name + g + "count", labels, hist.count)
        self.out._sample(self, family, name + g + "sum", labels, hist.total)

    def close(self) -> int:
        """The exposition is complete: vanished gauges get their 0; returns the samples kept."""
        return self.out._close(self)
