"""Exemplars (issue 24): only spans an export accepted become exemplars; the OpenMetrics text carries
them on the bucket holding the value (checked with prometheus_client's own OpenMetrics parser), the
0.0.4 text never does, and the protobuf format puts them on the classic bucket and the native histogram."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.model.catalogue import Family
from exporter.model.histogram import Histogram
from exporter.model.native import NativeSpec
from exporter.pipeline.exemplars import ExportedSpans, Recent
from exporter.sinks.exposition import BlockWriter, Format, ProtoWriter, join, join_proto
from tests.unit.test_native_histograms import decode

FAM = Family("t_seconds", "histogram", "A test.", ("x",))
TRACE = "0af7651916cd43dd8448eb211c80319c"


def test_only_exported_spans_are_named() -> None:
    touched: list[int] = []
    spans = ExportedSpans(on_change=lambda: touched.append(1))
    spans.ended(1, "connection", b"a")
    spans.ended(2, "connection", b"b")
    spans.ended(3, "stream", b"a/1")
    spans.exported(1, int(TRACE, 16))
    spans.failed(2)
    spans.exported(2, 5)  # a failed span never comes back as exported
    spans.exported(99, 7)  # never ended here (another node's, or shed): ignored
    assert spans.trace_id("connection", b"a") == TRACE
    assert spans.trace_id("connection", b"b") is None
    assert spans.trace_id("stream", b"a/1") is None  # still in the export queue
    assert touched == [1]
    recent = Recent()
    recent.add(1.0, "connection", b"a", 10.0)
    recent.add(2.0, "connection", b"b", 11.0)  # newer, but its span was not exported
    assert recent.pick(spans) == (1.0, TRACE, 10.0)
    assert recent.pick(None) is None


def test_bounded() -> None:
    spans = ExportedSpans(cap=10)
    for i in range(100):
        spans.ended(i, "connection", i)
        spans.exported(i, i + 1)
        spans.ended(1000 + i, "stream", i)  # never exported
    assert len(spans._exported) == 10 and len(spans._pending) <= 20


def hist(native: NativeSpec | None = None) -> Histogram:
    h = Histogram((0.5, 1.0, 8.0), native)
    for v in (0.1, 0.7, 3.0):
        h.observe(v)
    h.exemplar = (3.0, TRACE, 1700000000.25)
    return h


def test_openmetrics_exemplar_on_the_bucket_holding_the_value() -> None:
    out = BlockWriter({"node": "n"})
    out.histogram(FAM, hist(), {"x": "a"})
    block = out.finish()
    om = join([block], Format.OPENMETRICS).decode()
    (family,) = text_string_to_metric_families(om)
    with_exemplar = [s for s in family.samples if s.exemplar is not None]
    assert len(with_exemplar) == 1
    sample = with_exemplar[0]
    assert sample.labels["le"] == "8.0"
    assert sample.exemplar.labels == {"trace_id": TRACE}
    assert sample.exemplar.value == 3.0 and float(sample.exemplar.timestamp) == 1700000000.25
    assert "#" not in join([block], Format.TEXT).decode().replace("# HELP", "").replace("# TYPE", "")


def test_protobuf_exemplar_on_classic_bucket_and_native_histogram() -> None:
    for native in (None, NativeSpec(classic=True)):
        out = ProtoWriter()
        out.histogram(FAM, hist(native), {"x": "a"})
        (family,) = decode(join_proto([out.finish()]))
        h = family.metric[0].histogram
        marked = [b for b in h.bucket if b.HasField("exemplar")]
        assert [b.upper_bound for b in marked] == [8.0]
        assert marked[0].exemplar.label[0].value == TRACE and marked[0].exemplar.value == 3.0
        assert len(h.exemplars) == (1 if native else 0)
