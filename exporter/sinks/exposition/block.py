"""A node's exposition block: its samples rendered once, as bytes, grouped by family.

``BlockWriter`` is a ``Writer`` (``exporter.model.catalogue``): a mapper's ``collect()`` writes into it
(through the node's series budget). It formats each sample line straight away from a template: the
text before and after the node's own labels, escaped once per sample name and label set and shared
by every node (a fleet's nodes have mostly the same label sets), so memory does not grow with the
number of nodes and nothing is escaped again at the next scrape.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from itertools import accumulate
from typing import Protocol

from exporter.model.catalogue import Family, Labels, Writer
from exporter.model.histogram import Histogram
from exporter.sinks.exposition.escape import (
    go_float,
    help_om,
    help_text,
    label_pair,
    label_string,
    metric_name,
    om_sample_name,
)

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


Template = tuple[str, str]  # (text before the node's labels, text after them up to the value)
# (bucket layout marker, bucket lines' pieces, _count template, _sum template); the pieces are
# [before, (node labels), after, (value)] per bucket, newline-separated. None: no shared template
# for this node's labels.
_HistEntry = tuple[object, list[str] | None, Template | None, Template | None]

# Text of integer counts: cumulative bucket counts and small counters mostly repeat from one render
# to the next and across nodes. Only values below _COUNT_TEXT_MAX are kept: byte and packet totals
# are new at every render and filled the cache to its cap for nothing (100,000 entries, about 24
# MiB, were what a 200-node exporter's RSS climbed by over its first 20 minutes; issue 20). Bounded:
# dropped wholesale at the cap.
_COUNT_TEXT: dict[int, str] = {}
_COUNT_TEXT_CAP = 20_000
_COUNT_TEXT_MAX = 10_000_000


def _count_texts(counts: list[int]) -> list[str]:
    texts = list(map(_COUNT_TEXT.get, counts))
    if None in texts:
        if len(_COUNT_TEXT) >= _COUNT_TEXT_CAP:
            _COUNT_TEXT.clear()
        for i, text in enumerate(texts):
            if text is None:
                count = counts[i]
                texts[i] = go_float(count)
                if count < _COUNT_TEXT_MAX:
                    _COUNT_TEXT[count] = texts[i]  # type: ignore[assignment]
    return texts  # type: ignore[return-value]


class Templates:
    """Line templates and family heads shared by all writers; bounded (dropped wholesale at the cap).

    Safe to share between threads: entries are never mutated once stored and dict operations are atomic.
    """

    __slots__ = ("cap", "entries", "heads")

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self.entries: dict[object, object] = {}
        self.heads: dict[tuple[str, str, str, str], Head] = {}

    def put(self, key: object, value: object) -> None:
        if len(self.entries) >= self.cap:
            self.entries.clear()
        self.entries[key] = value

    def head(self, key: str, doc: str, typ: str, unit: str) -> Head:
        hkey = (key, doc, typ, unit)
        head = self.heads.get(hkey)
        if head is None:
            if len(self.heads) >= 4096:
                self.heads.clear()
            head = self.heads[hkey] = Head(key, doc, typ, unit)
        return head

    def clear(self) -> None:
        self.entries.clear()
        self.heads.clear()


SHARED = Templates()


class _Acc:
    """Lines of one family while a block is written; ``om``/``moved`` exist only when the formats differ."""

    __slots__ = ("head", "lines", "moved", "om")

    def __init__(self, head: Head) -> None:
        self.head = head
        self.lines: list[str] = []
        self.om: list[str] | None = None
        self.moved: dict[str, list[str]] | None = None


class BlockWriter(Writer):
    """Writes one node's samples (with its base labels) into a ``Block``."""

    __slots__ = ("_accs", "_base_names", "_base_str", "_entries", "_samples", "_templates", "base")

    def __init__(self, base: Mapping[str, str] | None = None, templates: Templates = SHARED) -> None:
        self.base = dict(base or {})
        self._base_names = tuple(sorted(self.base))
        self._base_str = ",".join([label_pair(k, v) for k, v in sorted(self.base.items())])
        self._templates = templates
        self._entries = templates.entries
        self._accs: dict[str, _Acc] = {}
        self._samples = 0

    # -- families and templates -----------------------------------------------------------------

    def _acc(self, key: str, doc: str, typ: str, unit: str = "") -> _Acc:
        acc = self._accs.get(key)
        if acc is None:
            acc = self._accs[key] = _Acc(self._templates.head(key, doc, typ, unit))
        return acc

    def _template(self, name: str, labels: Labels | None) -> Template | None:
        """The line around the node's labels, or None when this node's labels do not sit in one run
        (a local label overrides one of them or sorts between two of them): then the line is built
        in full for this node."""
        items = sorted(labels.items()) if labels else []
        if not self.base:
            return metric_name(name) + label_string(dict(items)) + " ", ""
        first, last = self._base_names[0], self._base_names[-1]
        before = [label_pair(k, v) for k, v in items if k < first]
        after = [label_pair(k, v) for k, v in items if k > last]
        if len(before) + len(after) != len(items):
            return None
        head = metric_name(name) + "{" + "".join(p + "," for p in before)
        return head, "".join("," + p for p in after) + "} "

    def _prefix(self, name: str, labels: Labels | None) -> str:
        """The line up to the value, built in full (no template)."""
        merged = {**self.base, **labels} if labels else self.base
        return metric_name(name) + label_string(merged) + " "

    def _put(self, acc: _Acc, name: str, labels: Labels | None, value: float) -> None:
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

    def _line(self, acc: _Acc, name: str, labels: Labels | None, value: float) -> None:
        """A sample that is never moved (the family's own name or a plain suffix); the fast path."""
        if not acc.head.plain:
            self._put(acc, name, labels, value)
            return
        key = (name, self._base_names, tuple(labels.items()) if labels else ())
        tpl = self._entries.get(key)
        if tpl is None:
            tpl = self._template(name, labels) or False
            self._templates.put(key, tpl)
        # Integer values (counts, mostly) repeat from render to render: their text is kept. Only exact
        # ints: a float key would find an int's text (hash(-0.0) == hash(0)) and lose the sign.
        num = _COUNT_TEXT.get(value) if type(value) is int else None
        if num is None:
            num = go_float(value)
            if type(value) is int and value < _COUNT_TEXT_MAX:
                if len(_COUNT_TEXT) >= _COUNT_TEXT_CAP:
                    _COUNT_TEXT.clear()
                _COUNT_TEXT[value] = num
        line = f"{tpl[0]}{self._base_str}{tpl[1]}{num}\n" if tpl else self._prefix(name, labels) + num + "\n"  # type: ignore[index]
        acc.lines.append(line)
        if acc.om is not None:
            acc.om.append(line)
        self._samples += 1

    # -- the Writer interface -------------------------------------------------------------------

    def _family_acc(self, family: Family) -> _Acc:
        acc = self._accs.get(family.name)
        if acc is None:
            acc = self._accs[family.name] = _Acc(self._templates.head(family.name, family.help, family.type, ""))
        return acc

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self._line(self._accs.get(family.name) or self._family_acc(family), family.name, labels, value)

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        """The sample gets ``_total``."""
        name = family.name
        self._line(self._accs.get(name) or self._family_acc(family), name + "_total", labels, value)

    def histogram(self, family: Family, hist: CumulativeHistogram, labels: Labels | None = None) -> None:
        """A cumulative histogram, or a point-in-time one (a ``gaugehistogram`` family)."""
        name = family.name
        gauge = family.type == "gaugehistogram"
        acc = self._accs.get(name) or self._family_acc(family)
        head = acc.head
        if not head.plain or head.name != name:
            self._histogram_slow(acc, name, hist.cumulative(), hist, labels, gauge)
            return
        # Our own Histogram is read directly: its bounds object identifies the bucket layout, so the
        # ``le`` strings are formatted once per layout and label set, not at every render.
        if isinstance(hist, Histogram):
            marker: object = hist.bounds
            values = _count_texts(list(accumulate(hist.counts)))
            cum = None
        else:
            cum = hist.cumulative()
            marker = tuple(le for le, _ in cum)
            values = [go_float(n) for _, n in cum]
        key = (name, gauge, self._base_names, tuple(labels.items()) if labels else ())
        entry: _HistEntry | None = self._entries.get(key)  # type: ignore[assignment]
        if entry is None or (entry[0] is not marker and entry[0] != marker):
            les = [le for le, _ in (cum if cum is not None else hist.cumulative())]
            entry = self._histogram_templates(marker, name, les, labels or {}, gauge)
            self._templates.put(key, entry)
        if entry[1] is None:
            self._histogram_slow(acc, name, hist.cumulative(), hist, labels, gauge)
            return
        base = self._base_str
        # The bucket lines are one list of [before, node labels, after, value] runs joined in C.
        pieces = entry[1].copy()
        pieces[1::4] = [base] * len(values)
        pieces[3::4] = values
        chunk = "".join(pieces) + "\n"
        count = f"{entry[2][0]}{base}{entry[2][1]}{go_float(hist.count)}\n"  # type: ignore[index]
        total = f"{entry[3][0]}{base}{entry[3][1]}{go_float(hist.total)}\n"  # type: ignore[index]
        self._samples += len(values) + 2
        exemplar = getattr(hist, "exemplar", None)
        if not gauge and exemplar is not None and isinstance(hist, Histogram):
            # OpenMetrics carries it on the bucket holding the value; the text format has no exemplars.
            value, trace_id, ts = exemplar
            i = bisect.bisect_left(hist.bounds, value)
            pieces[4 * i + 3] += f' # {{trace_id="{trace_id}"}} {go_float(value)} {ts:.3f}'
            if acc.om is None:
                acc.om = list(acc.lines)
            acc.om.append("".join(pieces) + "\n" + count + total)
            acc.lines.append(chunk + count + total)
            return
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

    def _histogram_templates(
        self, marker: object, name: str, les: list[str], labels: Labels, gauge: bool
    ) -> _HistEntry:
        bucket = name + "_bucket"
        g = "_g" if gauge else "_"
        buckets = [self._template(bucket, {**labels, "le": le}) for le in les]
        count = self._template(name + g + "count", labels)
        total = self._template(name + g + "sum", labels)
        if count is None or total is None or None in buckets:
            return marker, None, None, None
        pieces: list[str] = []
        for i, (before, after) in enumerate(buckets):  # type: ignore[misc]
            pieces += ["\n" + before if i else before, "", after, ""]
        return marker, pieces, count, total

    def _histogram_slow(
        self,
        acc: _Acc,
        name: str,
        cum: list[tuple[str, int]],
        hist: CumulativeHistogram,
        labels: Labels | None,
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
        return Block(parts, self._samples)
