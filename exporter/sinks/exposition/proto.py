"""The protobuf exposition (``io.prometheus.client.MetricFamily``, length-delimited), per-node blocks.

The format Prometheus asks for first when its native histograms are on, and the only one that
carries them. ``ProtoWriter`` is a ``Writer`` like the text formats' ``BlockWriter``: a node's
mappers write into it (through the node's series budget) and each sample is encoded at once into
its ``Metric`` message's bytes, kept per family. A ``MetricFamily`` is its header fields (name, help,
type) followed by its repeated ``metric`` field, so the join of many nodes is a byte copy: each
family's header once, then every node's encoded metrics, the whole length-prefixed.

Histograms carry native buckets when the mapper kept them (``--histograms.native``) and classic
buckets when it did not or when its spec asks for both (``--histograms.native-classic``; Prometheus
≥ 2.45 can store both, ``scrape_classic_histograms``; 2.42 keeps the native ones). An exemplar (tracing on) goes on the
classic bucket holding its value and into the native histogram's exemplars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from prometheus_client.registry import Collector

from exporter.model.catalogue import Family, Labels, Writer
from exporter.model.histogram import Histogram
from exporter.model.native import spans
from exporter.protocol import prometheus_metrics_pb2 as pb
from exporter.protocol.varint import encode_varint

_TYPES = {
    "counter": pb.COUNTER,
    "gauge": pb.GAUGE,
    "histogram": pb.HISTOGRAM,
    "gaugehistogram": pb.GAUGE_HISTOGRAM,
    "untyped": pb.UNTYPED,
    "unknown": pb.UNTYPED,
    "info": pb.GAUGE,
    "stateset": pb.GAUGE,
}


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return bytes((tag << 3 | 2,)) + encode_varint(len(payload)) + payload


class ProtoHead:
    """A family's identity and its encoded header fields (name, help, type)."""

    __slots__ = ("header", "name")

    def __init__(self, name: str, doc: str, typ: str) -> None:
        self.name = name
        family = pb.MetricFamily(name=name, help=doc, type=_TYPES[typ])
        self.header = family.SerializeToString()


class ProtoBlock:
    """A rendered node: per family key, its head and its encoded ``metric`` fields."""

    __slots__ = ("parts", "samples")

    def __init__(self, parts: dict[str, tuple[ProtoHead, bytes]], samples: int) -> None:
        self.parts = parts
        self.samples = samples


PROTO_EMPTY = ProtoBlock({}, 0)
_HEADS: dict[tuple[str, str, str], ProtoHead] = {}


def _head(name: str, doc: str, typ: str) -> ProtoHead:
    key = (name, doc, typ)
    head = _HEADS.get(key)
    if head is None:
        if len(_HEADS) >= 4096:
            _HEADS.clear()
        head = _HEADS[key] = ProtoHead(name, doc, typ)
    return head


def _exemplar(value: float, trace_id: str, ts: float) -> pb.Exemplar:
    ex = pb.Exemplar(value=value)
    ex.label.add(name="trace_id", value=trace_id)
    ex.timestamp.FromNanoseconds(int(ts * 1e9))
    return ex


class ProtoWriter(Writer):
    """Writes one node's samples (with its base labels) into a ``ProtoBlock``."""

    __slots__ = ("_base", "_metrics", "_samples")

    def __init__(self, base: Mapping[str, str] | None = None) -> None:
        self._base = dict(base or {})
        self._metrics: dict[str, tuple[ProtoHead, list[bytes]]] = {}
        self._samples = 0

    def _metric(self, labels: Labels | None) -> pb.Metric:
        merged = {**self._base, **labels} if labels else self._base
        metric = pb.Metric()
        for name in sorted(merged):
            metric.label.add(name=name, value=merged[name])
        return metric

    def _add(self, name: str, doc: str, typ: str, metric: pb.Metric) -> None:
        held = self._metrics.get(name)
        if held is None:
            held = self._metrics[name] = (_head(name, doc, typ), [])
        held[1].append(_field(4, metric.SerializeToString()))
        self._samples += 1

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        metric = self._metric(labels)
        metric.gauge.value = value
        self._add(family.name, family.help, "gauge", metric)

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        metric = self._metric(labels)
        metric.counter.value = value
        self._add(family.name + "_total", family.help, "counter", metric)

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        native = getattr(hist, "native", None)
        if family.type == "gaugehistogram" and (native is None or native.classic):
            self._gauge_histogram_classic(family, hist, labels)
            if native is None:
                return
        metric = self._metric(labels)
        out = metric.histogram
        out.sample_count = hist.count
        out.sample_sum = hist.total
        exemplar = getattr(hist, "exemplar", None)
        # A point-in-time histogram's classic buckets went out as gauges above, never in the message.
        if family.type == "histogram" and (native is None or native.classic):
            running = 0
            placed = exemplar is None
            for bound, n in zip(hist.bounds, hist.counts):
                running += n
                bucket = out.bucket.add(cumulative_count=running, upper_bound=bound)
                if not placed and exemplar is not None and exemplar[0] <= bound:
                    bucket.exemplar.CopyFrom(_exemplar(*exemplar))
                    placed = True
            if not placed and exemplar is not None:  # above every bound: the +Inf bucket, written for it
                bucket = out.bucket.add(cumulative_count=hist.count, upper_bound=math.inf)
                bucket.exemplar.CopyFrom(_exemplar(*exemplar))
        if native is not None:
            out.schema = native.schema
            out.zero_threshold = native.zero_threshold
            out.zero_count = native.zero_count
            for side_spans, side_deltas, buckets in (
                (out.positive_span, out.positive_delta, native.positive),
                (out.negative_span, out.negative_delta, native.negative),
            ):
                runs, deltas = spans(buckets)
                for offset, length in runs:
                    side_spans.add(offset=offset, length=length)
                side_deltas.extend(deltas)
            if not native.positive and not native.negative and native.zero_threshold == 0:
                out.positive_span.add(offset=0, length=0)  # no-op span: still a native histogram
            if exemplar is not None:
                out.exemplars.append(_exemplar(*exemplar))
        self._add(family.name, family.help, family.type, metric)

    def _gauge_histogram_classic(self, family: Family, hist: Histogram, labels: Labels | None) -> None:
        """Classic point-in-time buckets as the gauges a text scrape stores (``_bucket{le}``, ``_gcount``,
        ``_gsum``): Prometheus 2.42 files a classic GAUGE_HISTOGRAM message's buckets under the bare
        family name and drops its count and sum (client_golang never sends one), so it gets gauges."""
        for le, n in hist.cumulative():
            metric = self._metric({**(labels or {}), "le": le})
            metric.gauge.value = n
            self._add(family.name + "_bucket", family.help, "gauge", metric)
        for suffix, value in (("_gcount", float(hist.count)), ("_gsum", hist.total)):
            metric = self._metric(labels)
            metric.gauge.value = value
            self._add(family.name + suffix, family.help, "gauge", metric)

    def finish(self) -> ProtoBlock:
        parts = {key: (head, b"".join(metrics)) for key, (head, metrics) in self._metrics.items()}
        return ProtoBlock(parts, self._samples)


def collector_proto_block(collector: Collector) -> ProtoBlock:
    """prometheus_client's counters and gauges (the process_* metrics) as a protobuf block."""
    writer = ProtoWriter()
    for family in collector.collect():
        for s in family.samples:
            metric = writer._metric(s.labels)
            if family.type == "counter":
                if not s.name.endswith("_total"):
                    continue  # _created
                metric.counter.value = s.value
                writer._add(s.name, family.documentation, "counter", metric)
            elif family.type in ("gauge", "untyped", "unknown"):
                metric.gauge.value = s.value
                writer._add(s.name, family.documentation, "gauge", metric)
            else:
                raise ValueError(f"{s.name}: only counters and gauges are rendered in protobuf")
    return writer.finish()


def join_proto(blocks: Iterable[ProtoBlock]) -> bytes:
    """The length-delimited MetricFamily messages of these blocks' families merged, in first-met order."""
    return b"".join(join_proto_parts(blocks))


def join_proto_parts(blocks: Iterable[ProtoBlock]) -> list[bytes]:
    """``join_proto``'s pieces in order, not copied into one body (a scrape streams them)."""
    groups: dict[str, list[tuple[ProtoHead, bytes]]] = {}
    for block in blocks:
        for key, part in block.parts.items():
            groups.setdefault(key, []).append(part)
    out: list[bytes] = []
    for parts in groups.values():
        body = parts[0][0].header + b"".join(metrics for _, metrics in parts)
        out.append(encode_varint(len(body)))
        out.append(body)
    return out
