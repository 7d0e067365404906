"""The real mappers write into blocks unchanged; the result is what the exporter serves today, and it
passes prometheus_client's parsers (promtool's check is in tests/integration/test_promtool_checks.py).
Also format and gzip negotiation."""

from __future__ import annotations

import gzip

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    Summary,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.catalogue import Family
from exporter.pipeline.hub import Hub
from exporter.pipeline.node import NodeState
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.sinks.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Block,
    BlockWriter,
    CachedBlock,
    Format,
    accepts_gzip,
    collector_block,
    encode_body,
    join,
    negotiate,
)
from tests.support.reference import HubCollector


def fleet(nodes: int = 3, states: int = 6) -> Hub:
    hub = build_hub()
    for i in range(nodes):
        synthetic = SyntheticNode(connections=20 + 10 * i, streams_per_conn=2, seed=i + 1)
        for _ in range(states):
            for msg in decode_segments(encode_segment(synthetic.state())).messages:
                hub.ingest(f"node-{i}", msg)
            synthetic.step()
    return hub


def fill(hub: Hub, node: NodeState, out: BlockWriter) -> None:
    """What a scrape writes for one node, into a block writer."""
    with node.lock:
        hub.write_node(node, out)


def blocks(hub: Hub) -> list[Block]:
    out = []
    for node in sorted(hub.nodes.values(), key=lambda n: n.name):
        writer = BlockWriter(node.base_labels)
        fill(hub, node, writer)
        out.append(writer.finish())
    return out


@pytest.fixture(scope="module")
def hub() -> Hub:
    return fleet()


def test_mappers_write_blocks_equal_to_todays_exposition(hub: Hub) -> None:
    collector = HubCollector(hub, with_globals=False)  # globals carry a timing, not comparable
    rendered = blocks(hub)
    assert sum(b.samples for b in rendered) > 500
    assert join(rendered, Format.TEXT) == generate_latest(collector)  # type: ignore[arg-type]
    assert join(rendered, Format.OPENMETRICS) == generate_openmetrics(collector)  # type: ignore[arg-type]


def test_probe_block_equals_a_single_node_collector(hub: Hub) -> None:
    node = hub.nodes["node-1"]
    cached = CachedBlock(node.base_labels)
    block = cached.get(1, lambda out: fill(hub, node, out))
    assert join([block]) == generate_latest(HubCollector(hub, ["node-1"], with_globals=False))  # type: ignore[arg-type]


def test_prometheus_client_parsers_read_both_formats_back(hub: Hub) -> None:
    rendered = blocks(hub)
    text = join(rendered, Format.TEXT).decode()
    om = join(rendered, Format.OPENMETRICS).decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    parsed = [s for fam in parse_text(text) for s in fam.samples]
    assert len(parsed) == len(lines) == sum(b.samples for b in rendered)
    om_parsed = [s for fam in parse_openmetrics(om) for s in fam.samples]
    assert len(om_parsed) == len(lines)
    assert {(s.name, tuple(sorted(s.labels.items())), s.value) for s in parsed} == {
        (s.name, tuple(sorted(s.labels.items())), s.value) for s in om_parsed
    }


def test_awkward_label_values_survive_the_parser_round_trip() -> None:
    weird = 'quote " backslash \\ newline \n tab \t unicode é 🌐 brace } comma ,'
    writer = BlockWriter({"node": weird})
    writer.gauge(Family("g", "gauge", 'doc with \\ and \n and "'), 1.5, {"peer": weird})
    text = join([writer.finish()]).decode()
    (family,) = parse_text(text)
    assert family.documentation == 'doc with \\ and \n and "'
    assert family.samples[0].labels == {"node": weird, "peer": weird}


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("", Format.TEXT),
        ("text/plain; version=0.0.4", Format.TEXT),
        ("application/openmetrics-text", Format.OPENMETRICS),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", Format.OPENMETRICS),
        # what Prometheus 2.x and 3.x send
        (
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            Format.OPENMETRICS,
        ),
        ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;q=0.4", Format.OPENMETRICS),
        ("application/openmetrics-text; version=0.0.1, text/plain", Format.TEXT),
        ("application/json", Format.TEXT),
    ],
)
def test_format_negotiation(accept: str, fmt: Format) -> None:
    assert negotiate(accept) is fmt
    assert fmt.content_type == {Format.TEXT: TEXT_CONTENT_TYPE, Format.OPENMETRICS: OPENMETRICS_CONTENT_TYPE}[fmt]


@pytest.mark.parametrize(
    ("header", "gz"),
    [
        ("gzip", True),
        ("gzip, deflate", True),
        ("deflate, GZIP;q=0.5", True),
        ("*", True),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip;q=0.0, identity", False),
        ("gzip;q=bogus", False),
        ("", False),
        (None, False),
    ],
)
def test_gzip_negotiation(header: str | None, gz: bool) -> None:
    body = b"x 1.0\n" * 100
    sent, encoding = encode_body(body, header)
    assert accepts_gzip(header) is gz
    assert encoding == ("gzip" if gz else None)
    assert (gzip.decompress(sent) if gz else sent) == body


def test_a_prometheus_client_registry_renders_as_it_renders_itself() -> None:
    """The process's own metrics (and every client metric type, _created samples included) as a block."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    Counter("requests", "Requests.", ["path"], registry=registry).labels('/a"b').inc(3)
    Gauge("temperature", "Temp.", unit="celsius", registry=registry).set(-0.5)
    Histogram("latency_seconds", "Latency.", registry=registry, buckets=(0.1, 1.0)).observe(0.5)
    Summary("size_bytes", "Size.", registry=registry).observe(10)
    Info("build", "Build.", registry=registry).info({"version": "1\n2"})
    Enum("phase", "Phase.", states=["a", "b"], registry=registry).state("b")
    metrics = list(registry.collect())  # once: process metrics change between collections
    assert any(m.name.startswith("process_") for m in metrics)
    listed = _Listed(metrics)
    block = collector_block(listed)  # type: ignore[arg-type]
    assert join([block]) == generate_latest(listed)  # type: ignore[arg-type]
    assert join([block], Format.OPENMETRICS) == generate_openmetrics(listed)  # type: ignore[arg-type]
    assert b"requests_created" in join([block])


def test_samples_with_timestamps_are_refused_clearly() -> None:
    family = CounterMetricFamily("c", "C.")
    family.add_metric([], 1.0, timestamp=5.0)
    with pytest.raises(ValueError, match="timestamps"):
        collector_block(_Listed([family]))  # type: ignore[arg-type]


class _Listed:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics
