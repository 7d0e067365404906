"""Exemplars from metrics to traces, end to end (issue 24): a real Prometheus 2.42 with
``--enable-feature=exemplar-storage`` scrapes an exporter whose tracing sends spans over OTLP/HTTP to
a receiver in this process; ``query_exemplars`` returns trace ids, and every one of them is the
trace of a span the receiver got, for the same connection, stream or DHT query (the exemplar's value
is that span's duration). Half the connections are sampled out: none of their trace ids may appear.

2.42 stores exemplars of classic buckets from the OpenMetrics format (native-histogram exemplars are
stored from about 2.50), so this server runs without native histograms.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.model.histogram_profiles import CONNECTION_DURATION, HANDSHAKE_LATENCY, QUERY_DURATION, STREAM_DURATION
from tests.support.otlp import HttpReceiver, ReceivedSpan
from tests.support.procs import Prometheus, scrape_job, start_exporter, start_prometheus, wait_for

pytest.importorskip("opentelemetry.proto.trace.v1.trace_pb2")

SPAN_OF = {
    CONNECTION_DURATION: "libp2p.connection",
    HANDSHAKE_LATENCY: "libp2p.connection",
    STREAM_DURATION: "libp2p.stream",
    QUERY_DURATION: "libp2p.dht.query",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, HttpReceiver]]:
    work: Path = tmp_path_factory.mktemp("exemplars")
    receiver = HttpReceiver().start()
    feeder = start_exporter(
        [
            "--churn",
            "0.3",
            "--interval",
            "0.5",
            "--otlp.endpoint",
            receiver.endpoint,
            "--tracing.sample.connections",
            "0.5",
        ],
        work / "feeder",
        env={"OTEL_BSP_SCHEDULE_DELAY": "200"},  # export batches every 0.2 s, so exemplars come soon
        module="tests.support.churn_feeder",
    )
    prom = start_prometheus(work / "prom", [scrape_job("libp2p-exporter", feeder.port)], features=["exemplar-storage"])
    try:
        wait_for(prom.targets_up, 30, "the feeder target to be up")
        yield prom, receiver
    finally:
        prom.stop()
        feeder.stop()
        receiver.stop()


def exemplars(prom: Prometheus, family: str) -> list[dict[str, Any]]:
    now = time.time()
    data = prom.api("query_exemplars", query=f"{family}_bucket", start=f"{now - 600:.3f}", end=f"{now + 5:.3f}")
    return [e for series in data for e in series["exemplars"]]


def trace_hex(span: ReceivedSpan) -> str:
    return span.span.trace_id.hex()


@pytest.mark.parametrize("family", sorted(SPAN_OF))
def test_exemplars_are_traces_the_collector_got(stack: tuple[Prometheus, HttpReceiver], family: str) -> None:
    prom, receiver = stack
    wait_for(lambda: len(exemplars(prom, family)) >= 2, 60, f"exemplars on {family}", interval=0.5)
    got = exemplars(prom, family)
    spans = {trace_hex(s): s for s in receiver.iter_named(SPAN_OF[family])}
    by_trace: dict[str, list[ReceivedSpan]] = {}
    for s in receiver.iter_named(SPAN_OF[family]):
        by_trace.setdefault(trace_hex(s), []).append(s)
    for ex in got:
        trace_id = ex["labels"]["trace_id"]
        assert trace_id in spans, f"{family}: exemplar trace {trace_id} is not a {SPAN_OF[family]} span received"
        if family == HANDSHAKE_LATENCY:
            continue  # the handshake is a part of the connection's span, not its length
        durations = [(s.span.end_time_unix_nano - s.span.start_time_unix_nano) / 1e9 for s in by_trace[trace_id]]
        assert any(abs(d - float(ex["value"])) < 0.002 for d in durations), (family, ex["value"], durations)


def test_sampled_out_connections_have_no_exemplar(stack: tuple[Prometheus, HttpReceiver]) -> None:
    """The run is not vacuous: connections really were sampled out, and no exemplar names a trace
    the collector did not get (a made-up or sampled-out trace id would fail above too)."""
    prom, receiver = stack
    received = {trace_hex(s) for s in receiver.spans()}
    named = {e["labels"]["trace_id"] for f in SPAN_OF for e in exemplars(prom, f)}
    assert named and named <= received
    sampled_out = prom.value('sum(libp2p_exporter_spans_sampled_out_total{kind="connection"})')
    assert sampled_out and sampled_out > 0
