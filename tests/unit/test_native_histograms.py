"""Native histograms (issue 24): the bucket math against its definition, the bucket limit, merging,
the spans-and-deltas encoding, the protobuf exposition decoded back, and the Accept negotiation."""

from __future__ import annotations

import math
import random

import pytest

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.budget import _copy, _merge
from exporter.model.catalogue import Family
from exporter.model.histogram import Histogram
from exporter.model.histogram_profiles import FAMILIES, profile
from exporter.model.labels import Cardinality
from exporter.model.native import NativeSpec, bucket_bounds, bucket_index, spans
from exporter.protocol import prometheus_metrics_pb2 as pb
from exporter.protocol.varint import iter_delimited
from exporter.sinks.exposition import Format, ProtoWriter, join_proto, negotiate
from exporter.sinks.prometheus import Exposition


def reference_index(value: float, schema: int) -> int:
    """The definition, directly: the smallest i with value <= 2 ** (i / 2**schema)."""
    i = math.ceil(math.log2(value) * 2.0**schema)
    while 2.0 ** ((i - 1) / 2.0**schema) >= value:
        i -= 1
    while 2.0 ** (i / 2.0**schema) < value:
        i += 1
    return i


@pytest.mark.parametrize("schema", range(-4, 9))
def test_bucket_index_matches_the_definition(schema: int) -> None:
    rng = random.Random(schema)
    values = [rng.uniform(1e-6, 1e6) for _ in range(2000)] + [2.0**k for k in range(-20, 21)] + [1.0, 0.5, 3.0]
    for v in values:
        assert bucket_index(v, schema) == reference_index(v, schema), (v, schema)
        low, high = bucket_bounds(bucket_index(v, schema), schema)
        assert low < v <= high * (1 + 1e-12)


def test_powers_of_two_are_upper_boundaries_at_every_schema() -> None:
    for schema in range(0, 9):
        assert bucket_index(8.0, schema) == 3 * 2**schema
        assert bucket_index(8.000001, schema) == 3 * 2**schema + 1
    assert bucket_index(1.0, -2) == 0 and bucket_index(1.0001, -2) == 1 and bucket_index(16.0, -2) == 1


def test_bucket_limit_halves_resolution_and_keeps_every_count() -> None:
    spec = NativeSpec(schema=8, max_buckets=20)
    hist = Histogram((1.0,), spec)
    rng = random.Random(1)
    values = [rng.lognormvariate(0, 3) for _ in range(5000)] + [0.0, 0.0]
    for v in values:
        hist.observe(v)
    native = hist.native
    assert native is not None
    assert native.buckets() <= 20
    assert native.schema < 8
    assert native.zero_count == 2
    assert sum(native.positive.values()) + native.zero_count == len(values)
    # The same values observed straight at the reduced schema give the same buckets.
    direct = NativeSpec(schema=native.schema, max_buckets=10_000).new()
    for v in values:
        direct.observe(v)
    assert direct.positive == native.positive


def test_merge_at_the_coarser_schema() -> None:
    a = NativeSpec(schema=3).new()
    b = NativeSpec(schema=1).new()
    for v in (0.3, 1.5, 7.0, 100.0):
        a.observe(v)
        b.observe(v)
    a.merge(b)
    assert a.schema == 1
    expected = NativeSpec(schema=1).new()
    for v in (0.3, 1.5, 7.0, 100.0) * 2:
        expected.observe(v)
    assert a.positive == expected.positive


def test_budget_fold_merges_native_buckets() -> None:
    spec = NativeSpec()
    a, b = Histogram((1.0,), spec), Histogram((1.0,), spec)
    a.observe(0.5)
    b.observe(3.0)
    folded = _copy(a)
    _merge(folded, b)
    assert folded.native is not None and sum(folded.native.positive.values()) == 2
    assert a.native is not None and sum(a.native.positive.values()) == 1  # the mapper's own is untouched


def test_spans_and_deltas() -> None:
    assert spans({}) == ([], [])
    assert spans({-2: 1, -1: 3, 0: 2, 4: 5, 5: 1}) == ([(-2, 3), (3, 2)], [1, 2, -1, 3, -4])


def decode(body: bytes) -> list[pb.MetricFamily]:
    families = []
    for payload in iter_delimited(body):
        family = pb.MetricFamily()
        family.ParseFromString(payload)
        families.append(family)
    return families


def expand(spans_: list[pb.BucketSpan], deltas: list[int]) -> dict[int, int]:
    out, index, count, k = {}, 0, 0, 0
    for span in spans_:
        index += span.offset  # the first span's offset is its start, the others' the gap
        for _ in range(span.length):
            count += deltas[k]
            out[index] = count
            index += 1
            k += 1
    return out


def test_protobuf_block_decodes_to_the_same_histograms() -> None:
    fam = Family("t_seconds", "histogram", "A test.", ("x",))
    hist = Histogram((0.5, 1.0, 8.0), NativeSpec(schema=2))
    values = [0.1, 0.7, 0.7, 3.0, 20.0, 0.0]
    for v in values:
        hist.observe(v)
    out = ProtoWriter({"node": "n"})
    out.histogram(fam, hist, {"x": "a"})
    (family,) = decode(join_proto([out.finish()]))
    assert (family.name, family.type) == ("t_seconds", pb.HISTOGRAM)
    (metric,) = family.metric
    assert [(p.name, p.value) for p in metric.label] == [("node", "n"), ("x", "a")]
    h = metric.histogram
    assert (h.sample_count, h.sample_sum, h.schema, h.zero_count) == (6, sum(values), 2, 1)
    assert not h.bucket  # native only unless asked for
    assert expand(list(h.positive_span), list(h.positive_delta)) == hist.native.positive  # type: ignore[union-attr]

    both = Histogram((0.5, 1.0, 8.0), NativeSpec(schema=2, classic=True))
    for v in values:
        both.observe(v)
    out = ProtoWriter()
    out.histogram(fam, both)
    (family,) = decode(join_proto([out.finish()]))
    buckets = family.metric[0].histogram.bucket
    assert [(b.upper_bound, b.cumulative_count) for b in buckets] == [(0.5, 2), (1.0, 4), (8.0, 5)]


def test_exposition_in_protobuf_has_the_text_formats_counts() -> None:
    hub = build_hub(Cardinality(histograms=profile("lean").with_native(NativeSpec())))
    node = SyntheticNode(connections=20, streams_per_conn=2, seed=3, peerstore=True)
    for msg in node.messages(60):
        hub.ingest("n", msg)
    exposition = Exposition(hub, process=False)
    families = {f.name: f for f in decode(exposition.metrics(Format.PROTOBUF))}
    text = exposition.metrics(Format.TEXT).decode()
    for name in FAMILIES:
        family = families[name]
        for metric in family.metric:
            h = metric.histogram
            native_total = h.zero_count + sum(expand(list(h.positive_span), list(h.positive_delta)).values())
            assert native_total == h.sample_count > 0
        counts = sum(m.histogram.sample_count for m in family.metric)
        suffix = "_gcount" if family.type == pb.GAUGE_HISTOGRAM else "_count"
        text_counts = sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + suffix + "{")
        )
        assert counts == text_counts, name
    # The probe of one node is the same node's families.
    assert {f.name for f in decode(exposition.probe("n", Format.PROTOBUF))} >= set(FAMILIES)
    assert families["libp2p_peers"].metric[0].gauge.value >= 0
    assert families["libp2p_swarm_connections_opened_total"].type == pb.COUNTER


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,"
            "text/plain;version=0.0.4;q=0.3",
            Format.PROTOBUF,
        ),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", Format.TEXT),
        ("application/vnd.google.protobuf;proto=other.Thing;encoding=delimited", Format.TEXT),
        (
            "application/openmetrics-text;version=1.0.0,application/vnd.google.protobuf;"
            "proto=io.prometheus.client.MetricFamily;encoding=delimited",
            Format.OPENMETRICS,
        ),
        ("text/plain", Format.TEXT),
        (None, Format.TEXT),
    ],
)
def test_negotiation(accept: str | None, fmt: Format) -> None:
    assert negotiate(accept) is fmt


def test_native_spec_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="schema"):
        NativeSpec(schema=9)
    with pytest.raises(ValueError, match="limit"):
        NativeSpec(max_buckets=0)


async def test_http_protobuf_for_metrics_and_probe() -> None:
    """Over HTTP: the protobuf Accept header Prometheus sends gets the protobuf body and content type,
    for /metrics and for one node's /probe (which has that node's families alone)."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from exporter.server import build_app, serve_exposition

    hub = build_hub(Cardinality(histograms=profile().with_native(NativeSpec())))
    for name, seed in (("a", 1), ("b", 2)):
        for msg in SyntheticNode(connections=10, streams_per_conn=2, seed=seed).messages(30):
            hub.ingest(name, msg)

    async def probe(request: web.Request) -> web.Response:
        return await serve_exposition(request, request.query["node"])

    accept = (
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
        "application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    async with TestClient(TestServer(build_app(hub, extra_routes=[("GET", "/probe", probe)]))) as client:
        resp = await client.get("/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
        assert resp.headers["Content-Type"] == Format.PROTOBUF.content_type
        assert resp.headers["Content-Encoding"] == "gzip"
        families = {f.name: f for f in decode(await resp.read())}
        assert "process_cpu_seconds_total" in families and "libp2p_exporter_nodes" in families
        nodes = {p.value for m in families["libp2p_swarm_connection_duration_seconds"].metric for p in m.label}
        assert {"a", "b"} <= nodes
        one = await client.get("/probe", params={"node": "b"}, headers={"Accept": accept})
        assert one.headers["Content-Type"] == Format.PROTOBUF.content_type
        part = decode(await one.read())
        assert part and "process_cpu_seconds_total" not in {f.name for f in part}
        assert {p.value for f in part for m in f.metric for p in m.label if p.name == "node"} == {"b"}


@pytest.mark.parametrize("schema", [-2, 0, 3, 8])
def test_observe_sorted_is_observe_one_by_one(schema: int) -> None:
    rng = random.Random(schema + 10)
    values = sorted(
        [rng.lognormvariate(0, 2) for _ in range(3000)]
        + [2.0**k for k in range(-8, 9)] * 3
        + [0.0, 0.0, -0.5, float("inf")]
    )
    for limit in (10_000, 12):
        one = NativeSpec(schema=schema, max_buckets=limit).new()
        for v in values:
            one.observe(v)
        many = NativeSpec(schema=schema, max_buckets=limit).new()
        many.observe_sorted(values)
        assert (many.schema, many.zero_count, many.positive, many.negative) == (
            one.schema,
            one.zero_count,
            one.positive,
            one.negative,
        )


def test_gauge_histogram_classic_buckets_go_out_as_gauges_only() -> None:
    """Prometheus 2.42 misfiles a classic GAUGE_HISTOGRAM's buckets: they go out as the gauges a text
    scrape stores, and never also inside the message (that would be the same series twice)."""
    fam = Family("t_now", "gaugehistogram", "A test.")
    for native in (None, NativeSpec(classic=True)):
        hist = Histogram((1.0, 2.0), native).observe_many([0.5, 1.5, 3.0])
        out = ProtoWriter()
        out.histogram(fam, hist)
        families = {f.name: f for f in decode(join_proto([out.finish()]))}
        assert [m.gauge.value for m in families["t_now_bucket"].metric] == [1, 2, 3]
        assert families["t_now_gcount"].metric[0].gauge.value == 3
        if native is None:
            assert "t_now" not in families
        else:
            (metric,) = families["t_now"].metric
            assert families["t_now"].type == pb.GAUGE_HISTOGRAM and not metric.histogram.bucket
            assert metric.histogram.sample_count == 3 and metric.histogram.schema == 3
