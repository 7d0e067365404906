"""A node's exposition block: its samples rendered once, as bytes, grouped by family.

``BlockWriter`` has the write API of ``exporter.families.Scoped`` (gauge, info, counter, counters,
histogram), so a mapper's ``collect()`` writes into it unchanged. Instead of building
prometheus_client ``Metric`` objects it formats each sample line straight away; the part of the line
before the value (name and escaped labels, the node's own labels included) is cached per node across
renders, so an unchanged label set is escaped once, not once per scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Protocol

from exporter.exposition.escape import go_float, help_om, help_text, label_string, metric_name, om_sample_name
from exporter.histogram import Histogram

TYPES = ("counter", "gauge", "summary", "histogram", "gaugehistogram", "unknown", "info", "stateset")
# Samples the 0.0.4 text format moves out of their family into trailing gauge families, in this order.
MOVED_SUFFIXES = ("_created", "_gcount", "_gsum")
_TEXT_TYPE = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_TEXT_NAME_SUFFIX = {"counter": "_total", "info": "_info"}


class CumulativeHistogram(Protocol):
    count: int
    total: float

    def cumulative(self) -> list[tuple[str, int]]: ...


class Head:
    """A family's identity and its HELP/TYPE(/UNIT) lines in both formats, built once."""

    __slots__ = ("doc", "name", "om_header", "plain", "text_header", "typ", "unit")

    def __init__(self, name: str, doc: str, typ: str, unit: str = "") -> None:
        if typ == "untyped":
            typ = "unknown"
        if typ not in TYPES:
            raise ValueError(f"invalid metric type {typ!r}")
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        if not name:
            raise ValueError("metric name cannot be empty")
        self.name = name  # the exposed family name (unit suffix included), as Metric.name
        self.doc = doc
        self.typ = typ
        self.unit = unit
        # Sample names derived from a plain name print the same in both formats.
        self.plain = metric_name(name) == om_sample_name(name) == name
        text_name = metric_name(name + _TEXT_NAME_SUFFIX.get(typ, ""))
        self.text_header = (
            f"# HELP {text_name} {help_text(doc)}\n# TYPE {text_name} {_TEXT_TYPE.get(typ, typ)}\n".encode()
        )
        om_name = metric_name(name)
        om = f"# HELP {om_name} {help_om(doc)}\n# TYPE {om_name} {typ}\n"
        if unit:
            om += f"# UNIT {om_name} {unit}\n"
        self.om_header = om.encode()

    def moved_header(self, suffix: str) -> bytes:
        """The text format's header of the trailing gauge family holding this family's ``suffix`` samples."""
        name = metric_name(self.name + suffix)
        return f"# HELP {name} {help_text(self.doc)}\n# TYPE {name} gauge\n".encode()


class Part:
    """One node's samples of one family: text-format lines, OpenMetrics lines, moved text lines."""

    __slots__ = ("head", "moved", "om", "text")

    def __init__(self, head: Head, text: bytes, om: bytes, moved: tuple[tuple[str, bytes], ...]) -> None:
        self.head = head
        self.text = text
        self.om = om
        self.moved = moved


class Block:
    """A rendered node: its parts by family key, in the order the node first wrote each family."""

    __slots__ = ("parts", "samples")

    def __init__(self, parts: dict[str, Part], samples: int) -> None:
        self.parts = parts
        self.samples = samples


EMPTY = Block({}, 0)


class PrefixCache:
    """Line prefixes (``name{labels} ``) of one node, kept across renders and bounded by them.

    The cache is dropped when it grows past twice the samples of the render that just finished plus
    a margin, so label sets that vanished do not accumulate. The owner serialises use (one render of a
    node at a time).
    """

    __slots__ = ("base", "entries", "heads")

    def __init__(self, base: Mapping[str, str] | None = None) -> None:
        self.base = dict(base or {})
        self.entries: dict[object, object] = {}
        self.heads: dict[tuple[str, str, str, str], Head] = {}

    def trim(self, samples: int) -> None:
        if len(self.entries) > 2 * samples + 256:
            self.entries.clear()
        if len(self.heads) > 4096:
            self.heads.clear()


class _Acc:
    """Lines of one family while a block is written; ``om``/``moved`` exist only when the formats differ."""

    __slots__ = ("head", "lines", "moved", "om")

    def __init__(self, head: Head) -> None:
        self.head = head
        self.lines: list[str] = []
        self.om: list[str] | None = None
        self.moved: dict[str, list[str]] | None = None


class BlockWriter:
    """Writes one node's samples (with its base labels) into a ``Block``; same calls as ``Scoped``."""

    __slots__ = ("_accs", "_cache", "_entries", "_samples", "base")

    def __init__(self, base: Mapping[str, str] | None = None, cache: PrefixCache | None = None) -> None:
        base = dict(base or {})
        if cache is None or cache.base != base:
            cache = PrefixCache(base)
        self.base = base
        self._cache = cache
        self._entries = cache.entries
        self._accs: dict[str, _Acc] = {}
        self._samples = 0

    # -- families -------------------------------------------------------------------------------

    def _acc(self, key: str, doc: str, typ: str, unit: str = "") -> _Acc:
        acc = self._accs.get(key)
        if acc is None:
            hkey = (key, doc, typ, unit)
            head = self._cache.heads.get(hkey)
            if head is None:
                head = self._cache.heads[hkey] = Head(key, doc, typ, unit)
            acc = self._accs[key] = _Acc(head)
        return acc

    def _prefix(self, name: str, labels: Mapping[str, str] | None) -> str:
        merged = {**self.base, **labels} if labels else self.base
        return metric_name(name) + label_string(merged) + " "

    def _put(self, acc: _Acc, name: str, labels: Mapping[str, str] | None, value: float) -> None:
        """Any sample, any family: handles names that print differently in OpenMetrics and moved samples."""
        self._samples += 1
        head = acc.head
        merged = {**self.base, **labels} if labels else self.base
        lstr = label_string(merged)
        num = go_float(value)
        text_line = f"{metric_name(name)}{lstr} {num}\n"
        om_line = f"{om_sample_name(name)}{lstr} {num}\n"
        suffix = next((s for s in MOVED_SUFFIXES if name == head.name + s), None)
        if acc.om is None and (suffix is not None or om_line != text_line):
            acc.om = list(acc.lines)
        if acc.om is not None:
            acc.om.append(om_line)
        if suffix is None:
            acc.lines.append(text_line)
        else:
            if acc.moved is None:
                acc.moved = {}
            acc.moved.setdefault(suffix, []).append(text_line)

    def _line(self, acc: _Acc, name: str, labels: Mapping[str, str] | None, value: float) -> None:
        """A sample that is never moved (the family's own name or a plain suffix); the fast path."""
        if not acc.head.plain:
            self._put(acc, name, labels, value)
            return
        key = (name, tuple(labels.items())) if labels else name
        prefix = self._entries.get(key)
        if prefix is None:
            prefix = self._entries[key] = self._prefix(name, labels)
        line = prefix + go_float(value) + "\n"  # type: ignore[operator]
        acc.lines.append(line)
        if acc.om is not None:
            acc.om.append(line)
        self._samples += 1

    # -- the Scoped API -------------------------------------------------------------------------

    def gauge(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._line(self._acc(name, doc, "gauge"), name, labels, value)

    def info(self, name: str, doc: str, labels: dict[str, str]) -> None:
        """An ``_info`` gauge of value 1 (name given without the suffix)."""
        full = name + "_info"
        self._line(self._acc(full, doc, "gauge"), full, labels, 1.0)

    def counter(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        """``name`` without ``_total``; the sample gets the suffix."""
        self._line(self._acc(name, doc, "counter"), name + "_total", labels, value)

    def counters(self, name: str, doc: str, label: str, counts: Mapping[str, float], known: Iterable[str] = ()) -> None:
        """One counter sample per label value; values known to exist are exported as 0 until seen."""
        for value in sorted(set(counts) | set(known)):
            self.counter(name, doc, counts.get(value, 0), {label: value})

    def histogram(
        self,
        name: str,
        doc: str,
        hist: CumulativeHistogram,
        labels: dict[str, str] | None = None,
        *,
        gauge: bool = False,
    ) -> None:
        """A cumulative histogram, or a point-in-time one (``gauge=True``)."""
        acc = self._acc(name, doc, "gaugehistogram" if gauge else "histogram")
        head = acc.head
        if not head.plain or head.name != name:
            self._histogram_slow(acc, name, hist.cumulative(), hist, labels, gauge)
            return
        # Our own Histogram is read directly: its bounds object identifies the bucket layout, so the
        # ``le`` strings are formatted once per layout and label set, not at every render.
        if isinstance(hist, Histogram):
            marker: object = hist.bounds
            counts: Iterable[int] = accumulate(hist.counts)
            cum = None
        else:
            cum = hist.cumulative()
            marker = tuple(le for le, _ in cum)
            counts = [n for _, n in cum]
        key = (name, gauge, tuple(labels.items()) if labels else ())
        entry: tuple[object, tuple[str, ...], str, str] | None = self._entries.get(key)  # type: ignore[assignment]
        if entry is None or (entry[0] is not marker and entry[0] != marker):
            les = [le for le, _ in (cum if cum is not None else hist.cumulative())]
            entry = self._entries[key] = self._histogram_prefixes(marker, name, les, labels or {}, gauge)
        # Cumulative counts repeat across neighbouring buckets: format each run once.
        lines = []
        last: object = None
        text = ""
        for prefix, n in zip(entry[1], counts):  # type: ignore[call-overload]
            if n != last:
                last = n
                text = go_float(n) + "\n"
            lines.append(prefix + text)
        chunk = "".join(lines)
        count = entry[2] + go_float(hist.count) + "\n"
        total = entry[3] + go_float(hist.total) + "\n"
        self._samples += len(entry[1]) + 2
        if not gauge:
            chunk += count + total
            acc.lines.append(chunk)
            if acc.om is not None:
                acc.om.append(chunk)
            return
        # A gauge histogram's _gcount/_gsum go to trailing families in the text format.
        if acc.om is None:
            acc.om = list(acc.lines)
        acc.om.append(chunk + count + total)
        acc.lines.append(chunk)
        if acc.moved is None:
            acc.moved = {}
        acc.moved.setdefault("_gcount", []).append(count)
        acc.moved.setdefault("_gsum", []).append(total)

    def _histogram_prefixes(
        self, marker: object, name: str, les: list[str], labels: dict[str, str], gauge: bool
    ) -> tuple[object, tuple[str, ...], str, str]:
        bucket = name + "_bucket"
        g = "_g" if gauge else "_"
        return (
            marker,
            tuple(self._prefix(bucket, {**labels, "le": le}) for le in les),
            self._prefix(name + g + "count", labels),
            self._prefix(name + g + "sum", labels),
        )

    def _histogram_slow(
        self,
        acc: _Acc,
        name: str,
        cum: list[tuple[str, int]],
        hist: CumulativeHistogram,
        labels: dict[str, str] | None,
        gauge: bool,
    ) -> None:
        labels = labels or {}
        for le, n in cum:
            self._put(acc, name + "_bucket", {**labels, "le": le}, n)
        prefix = "_g" if gauge else "_"
        self._put(acc, name + prefix + "count", labels, hist.count)
        self._put(acc, name + prefix + "sum", labels, hist.total)

    # -- any family -----------------------------------------------------------------------------

    def sample(
        self,
        family: str,
        doc: str,
        typ: str,
        name: str,
        value: float,
        labels: dict[str, str] | None = None,
        unit: str = "",
    ) -> None:
        """One sample ``name`` of family ``family`` of any type (summary, info, stateset, ``_created``...)."""
        self._put(self._acc(family, doc, typ, unit), name, labels, value)

    def finish(self) -> Block:
        """The rendered block; the writer must not be used afterwards."""
        parts: dict[str, Part] = {}
        for key, acc in self._accs.items():
            text = "".join(acc.lines).encode()
            om = text if acc.om is None else "".join(acc.om).encode()
            moved: tuple[tuple[str, bytes], ...] = ()
            if acc.moved:
                moved = tuple((s, "".join(acc.moved[s]).encode()) for s in sorted(acc.moved))
            parts[key] = Part(acc.head, text, om, moved)
        self._cache.trim(self._samples)
        return Block(parts, self._samples)
