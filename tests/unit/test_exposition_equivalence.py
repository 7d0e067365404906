"""Blocks render byte for byte what prometheus_client prints for the same writes.

The reference writes each sample straight into prometheus_client ``Metric`` families, printed by
``generate_latest`` (text 0.0.4) and OpenMetrics ``generate_latest``; ours is ``BlockWriter`` fed the
same writes through the ``Writer`` interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from exporter.model.catalogue import Family
from exporter.model.histogram import Histogram
from exporter.sinks.exposition import BlockWriter, CachedBlock, Format, Templates, join
from exporter.sinks.exposition.escape import go_float

Op = tuple[Any, ...]


class _Listed:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


class Families:
    """The reference's families: prometheus_client ``Metric`` objects by name, in the order first written."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}

    def family(self, name: str, doc: str, typ: str, unit: str = "") -> Metric:
        fam = self.by_name.get(name)
        if fam is None:
            fam = self.by_name[name] = Metric(name, doc, typ, unit)
        return fam

    def metrics(self) -> list[Metric]:
        return list(self.by_name.values())


def apply(op: Op, out: Any, fams: Families | None) -> None:
    """One write, the same for the reference (``_Raw``) and for ours (``BlockWriter``)."""
    if isinstance(out, BlockWriter):
        write(op, out)
        return
    kind, *args = op
    if kind == "gauge":
        out.gauge(*args)
    elif kind == "counter":
        out.counter(*args)
    elif kind == "info":
        out.info(*args)
    elif kind == "counters":
        name, doc, label, counts, known = args
        out.counters(name, doc, label, counts, known)
    elif kind == "histogram":
        name, doc, bounds, observations, labels, gauge = args
        out.histogram(name, doc, Histogram(bounds).observe_all(observations), labels, gauge=gauge)
    else:  # any type, any sample name: the generic path
        family, doc, typ, unit, name, value, labels = args
        if isinstance(out, BlockWriter):
            out.sample(family, doc, typ, name, value, labels, unit)
        else:
            assert fams is not None
            merged = {**out.base, **labels} if labels else dict(out.base)
            fams.family(family, doc, typ, unit).add_sample(name, merged, float(value))


def write(op: Op, out: BlockWriter) -> None:
    """One write into ours, through the ``Writer`` interface (families made as the op declares them)."""
    kind, *args = op
    if kind in ("gauge", "counter"):
        name, doc, value, labels = args
        getattr(out, kind)(Family(name, kind, doc), value, labels)
    elif kind == "info":
        name, doc, labels = args
        out.info(Family(name + "_info", "gauge", doc), labels)
    elif kind == "counters":
        name, doc, label, counts, known = args
        out.counters(Family(name, "counter", doc), label, counts, known)
    elif kind == "histogram":
        name, doc, bounds, observations, labels, gauge = args
        fam = Family(name, "gaugehistogram" if gauge else "histogram", doc)
        out.histogram(fam, Histogram(bounds).observe_all(observations), labels)
    else:  # any type, any sample name: the generic path
        family, doc, typ, unit, name, value, labels = args
        out.sample(family, doc, typ, name, value, labels, unit)


class _Raw:
    """Samples straight into prometheus_client families, one per write (the series budget would apply the
    series budget, which sums a repeated label combination: a different thing from rendering)."""

    def __init__(self, fams: Families, base: dict[str, str]) -> None:
        self.fams, self.base = fams, base

    def _labels(self, labels: dict[str, str] | None) -> dict[str, str]:
        return {**self.base, **labels} if labels else dict(self.base)

    def gauge(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.fams.family(name, doc, "gauge").add_sample(name, self._labels(labels), float(value))

    def info(self, name: str, doc: str, labels: dict[str, str]) -> None:
        self.fams.family(name + "_info", doc, "gauge").add_sample(name + "_info", self._labels(labels), 1.0)

    def counter(self, name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.fams.family(name, doc, "counter").add_sample(name + "_total", self._labels(labels), float(value))

    def counters(self, name: str, doc: str, label: str, counts: dict[str, float], known: Sequence[str] = ()) -> None:
        for value in sorted(set(counts) | set(known)):
            self.counter(name, doc, counts.get(value, 0), {label: value})

    def histogram(
        self, name: str, doc: str, hist: Histogram, labels: dict[str, str] | None = None, *, gauge: bool = False
    ) -> None:
        fam = self.fams.family(name, doc, "gaugehistogram" if gauge else "histogram")
        base = self._labels(labels)
        for le, count in hist.cumulative():
            fam.add_sample(name + "_bucket", {**base, "le": le}, float(count))
        suffix = ("_gcount", "_gsum") if gauge else ("_count", "_sum")
        fam.add_sample(name + suffix[0], base, float(hist.count))
        fam.add_sample(name + suffix[1], base, float(hist.total))


def reference(nodes: Sequence[tuple[dict[str, str], Sequence[Op]]]) -> tuple[bytes, bytes]:
    fams = Families()
    for base, ops in nodes:
        scoped = _Raw(fams, base)
        for op in ops:
            apply(op, scoped, fams)
    listed = _Listed(fams.metrics())
    return generate_latest(listed), generate_openmetrics(listed)  # type: ignore[arg-type]


def ours(nodes: Sequence[tuple[dict[str, str], Sequence[Op]]]) -> tuple[bytes, bytes]:
    blocks = []
    for base, ops in nodes:
        writer = BlockWriter(base)
        for op in ops:
            apply(op, writer, None)
        blocks.append(writer.finish())
    return join(blocks, Format.TEXT), join(blocks, Format.OPENMETRICS)


# -- strategies -------------------------------------------------------------------------------------

_plain = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
# Mostly legacy names; some with ':' (kept in text, underscored in OpenMetrics samples), invalid
# characters, a leading digit, a trailing newline (accepted as valid by prometheus_client's regex).
names = st.one_of(
    _plain,
    _plain,
    _plain.map(lambda s: s + ":x"),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6),
    _plain.map(lambda s: "9" + s),
    _plain.map(lambda s: s + "\n"),
)
label_names = st.one_of(_plain, st.sampled_from(["le", "node", "__x", "a-b", "x\n", "é"]))
label_values = st.text(st.one_of(st.sampled_from('"\\\n{},= '), st.characters(exclude_categories=("Cs",))), max_size=8)
docs = st.text(st.one_of(st.sampled_from('"\\\n'), st.characters(exclude_categories=("Cs",))), max_size=12)
label_sets = st.one_of(st.none(), st.dictionaries(label_names, label_values, max_size=3))
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([-0.0, 0.0, 1e6, 1234567.0, 999999.9, 1e15, 1e16, 123456789012.5, 5e-324, 1e-7, -1e6]),
)
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
types = st.sampled_from(
    ["counter", "gauge", "summary", "histogram", "gaugehistogram", "unknown", "untyped", "info", "stateset"]
)
suffixes = st.sampled_from(["", "_total", "_created", "_gsum", "_gcount", "_sum", "_count", "_bucket", "_info"])


@st.composite
def generic_op(draw: st.DrawFn) -> Op:
    family = draw(names)
    unit = draw(st.sampled_from(["", "", "seconds", "bytes"]))
    exposed = family if not unit or family.endswith("_" + unit) else f"{family}_{unit}"
    name = exposed + draw(suffixes) if draw(st.booleans()) else draw(names)
    return ("sample", family, draw(docs), draw(types), unit, name, draw(values), draw(label_sets))


ops = st.one_of(
    st.tuples(st.just("gauge"), names, docs, values, label_sets),
    st.tuples(st.just("counter"), names, docs, values, label_sets),
    st.tuples(st.just("info"), names, docs, st.dictionaries(label_names, label_values, max_size=3)),
    st.tuples(
        st.just("counters"),
        names,
        docs,
        label_names,
        st.dictionaries(label_values, values, max_size=3),
        st.lists(label_values, max_size=3),
    ),
    st.tuples(
        st.just("histogram"),
        names,
        docs,
        st.lists(finite, min_size=1, max_size=6, unique=True).map(sorted),
        st.lists(finite, max_size=10),
        label_sets,
        st.booleans(),
    ),
    generic_op(),
)
bases = st.one_of(st.just({}), st.dictionaries(label_names, label_values, max_size=2))


def _declares(op: Op) -> tuple[str, str]:
    """The type and unit an op gives its family."""
    kind = op[0]
    if kind == "sample":
        return op[3], op[4]
    if kind == "histogram":
        return ("gaugehistogram" if op[-1] else "histogram"), ""
    return ("counter" if kind == "counters" else kind), ""


@st.composite
def fleets(draw: st.DrawFn) -> list[tuple[dict[str, str], list[Op]]]:
    """Nodes drawing their writes from one pool, so families overlap and first appear in varied order.

    A family name keeps one type and unit across the fleet, as the exporter's families do (each is
    declared in one place). prometheus_client's merge of two declarations is not a contract: it keeps
    the first one's type and unit and files the second one's samples under it."""
    pool = draw(st.lists(ops, min_size=1, max_size=10))
    declared: dict[str, tuple[str, str]] = {}
    pool = [op for op in pool if declared.setdefault(op[1], _declares(op)) == _declares(op)]
    picks = st.lists(st.sampled_from(pool), max_size=8)
    nodes = [({"node": f"n{i}"}, draw(picks)) for i in range(draw(st.integers(1, 4)))]
    return [*nodes, (draw(bases), draw(picks))]  # the last one stands for the global families


# -- properties -------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.one_of(values, st.floats()))
def test_go_float_matches_prometheus_client(value: float) -> None:
    assert go_float(value) == floatToGoString(value)


@settings(max_examples=300, deadline=None)
@given(bases, st.lists(ops, max_size=12))
def test_one_block_matches_prometheus_client(base: dict[str, str], writes: list[Op]) -> None:
    assert ours([(base, writes)]) == reference([(base, writes)])


@settings(max_examples=200, deadline=None)
@given(fleets())
def test_joined_blocks_match_prometheus_client_on_merged_families(nodes: list[tuple[dict[str, str], list[Op]]]) -> None:
    text, om = ours(nodes)
    want_text, want_om = reference(nodes)
    assert text == want_text
    assert om == want_om
    assert om.endswith(b"# EOF\n")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(bases, st.lists(ops, max_size=8)), min_size=1, max_size=4))
def test_shared_templates_across_renders_and_nodes_do_not_change_the_output(
    renders: list[tuple[dict[str, str], list[Op]]],
) -> None:
    """Renders through templates other nodes (other base labels) filled print what a cold render prints."""
    shared = Templates()
    for base, writes in renders:
        warm = BlockWriter(base, shared)
        cold = BlockWriter(base, Templates())
        for op in writes:
            apply(op, warm, None)
            apply(op, cold, None)
        for fmt in Format:
            assert join([warm.finish()], fmt) == join([cold.finish()], fmt)
        assert ours([(base, writes)]) == reference([(base, writes)])


def test_cached_block_renders_once_per_version() -> None:
    calls: list[int] = []
    cached = CachedBlock({"node": "a"})

    def fill(out: BlockWriter) -> None:
        calls.append(1)
        out.gauge(Family("x", "gauge", "X."), float(len(calls)))

    first = cached.get(1, fill)
    assert cached.get(1, fill) is first
    second = cached.get(2, fill)
    assert second is not first
    assert (cached.renders, len(calls)) == (2, 2)
    assert join([second]) == b'# HELP x X.\n# TYPE x gauge\nx{node="a"} 2.0\n'


def test_templates_are_bounded() -> None:
    shared = Templates(cap=500)
    g = Family("g", "gauge", "G.")
    for round_ in range(5):
        writer = BlockWriter({"node": "a"}, shared)
        for i in range(1000):
            writer.gauge(g, 1.0, {"peer": f"{round_}-{i}"})  # every label value new
        block = writer.finish()
        assert len(shared.entries) <= 500
        assert block.samples == 1000


def test_templates_are_shared_by_nodes_and_hold_no_node_label() -> None:
    shared = Templates()
    g, h = Family("g", "gauge", "G."), Family("h", "histogram", "H.")
    for node in ("a", "b", "c"):
        writer = BlockWriter({"node": node, "zone": "eu"}, shared)
        writer.gauge(g, 1.0, {"dir": "in"})
        writer.gauge(g, 1.0, {"region": "x"})  # sorts between the node's labels: built in full
        writer.histogram(h, Histogram([1.0]).observe_all([0.5]), {"dir": "in"})
        assert join([writer.finish()]).count(f'node="{node}",zone="eu"'.encode()) == 5
    assert len(shared.entries) == 3
    assert not any("node=" in repr(v) for v in shared.entries.values())


def test_nan_and_signed_zero_sample_values() -> None:
    writer = BlockWriter()
    writer.gauge(Family("a", "gauge", ""), math.nan)
    writer.gauge(Family("b", "gauge", ""), -0.0)
    writer.gauge(Family("c", "gauge", ""), 1e22)
    assert join([writer.finish()]).splitlines()[2::3] == [b"a NaN", b"b -0.0", b"c 1e+22"]


def test_moved_samples_of_different_nodes_merge_in_suffix_order() -> None:
    """Text format: one node has only ``_gsum``, a later one ``_created``; trailing families sort by suffix."""
    first = ("sample", "x", "X.", "gaugehistogram", "", "x_gsum", 2.0, None)
    later = ("sample", "x", "X.", "gaugehistogram", "", "x_created", 1.0, None)
    nodes = [({"node": "a"}, [first]), ({"node": "b"}, [later])]
    text, om = ours(nodes)
    assert (text, om) == reference(nodes)
    assert text.index(b"# TYPE x_created gauge") < text.index(b"# TYPE x_gsum gauge")


class _Cumulative:
    """A histogram that only offers ``cumulative()`` (not exporter.model.histogram.Histogram)."""

    def __init__(self, hist: Histogram) -> None:
        self.count = hist.count
        self.total = hist.total
        self._cum = hist.cumulative()

    def cumulative(self) -> list[tuple[str, int]]:
        return self._cum


@settings(max_examples=100, deadline=None)
@given(
    st.lists(finite, min_size=1, max_size=6, unique=True).map(sorted),
    st.lists(st.lists(finite, max_size=10), min_size=1, max_size=3),
    label_sets,
    st.booleans(),
)
def test_any_histogram_with_cumulative_renders_the_same(
    bounds: list[float], rounds: list[list[float]], labels: dict[str, str] | None, gauge: bool
) -> None:
    shared = Templates()
    for observations in rounds:
        hist = Histogram(bounds).observe_all(observations)
        fams = Families()
        _Raw(fams, {"node": "a"}).histogram("h", "H.", hist, labels, gauge=gauge)
        fam = Family("h", "gaugehistogram" if gauge else "histogram", "H.")
        for h in (hist, _Cumulative(hist)):  # the same cache entry, reached both ways
            writer = BlockWriter({"node": "a"}, shared)
            writer.histogram(fam, h, labels)
            block = writer.finish()
            listed = _Listed(fams.metrics())
            assert join([block]) == generate_latest(listed)  # type: ignore[arg-type]
            assert join([block], Format.OPENMETRICS) == generate_openmetrics(listed)  # type: ignore[arg-type]
