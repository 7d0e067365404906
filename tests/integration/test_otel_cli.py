"""Tracing through the real CLI (replay and demo), into real receivers, and past a collector in trouble."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.otlp import GrpcReceiver, HttpReceiver
from tests.support.procs import Proc, free_port, http_get, start_exporter, wait_for
from tests.support.samples import matching, series

FAST_BATCH = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # the standard variable; export every 100 ms


def sample(proc: Proc, name: str, **labels: str) -> float | None:
    """The first series of ``name`` whose labels include ``labels``, as ``proc`` exposes it now."""
    return next(iter(matching(series(http_get(proc.url + "/metrics")), name, **labels)), None)


def test_replay_traces_via_standard_env(
    fixture_path: Path, http_receiver: HttpReceiver, procs: list[Proc], tmp_path: Path
) -> None:
    env = {**FAST_BATCH, "OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.endpoint, "OTEL_SERVICE_NAME": "observed"}
    proc = start_exporter(["replay", str(fixture_path), "--speed", "0"], tmp_path, env=env)
    procs.append(proc)
    # 1004 spans end while the file plays; 29 are still open and end at shutdown.
    wait_for(lambda: len(http_receiver.spans()) >= 1004, 30, "spans of the replayed file")
    wait_for(lambda: sample(proc, "libp2p_exporter_spans_exported_total", node="sample-1min") == 1004, 10, "count")
    assert sample(proc, "libp2p_exporter_spans_open", node="sample-1min") == 29
    assert proc.stop() == 0
    spans = http_receiver.spans()
    assert len(spans) == 10 + 96 + 927
    assert sum(1 for s in spans if s.attrs.get("libp2p.span.open_at_shutdown")) == 29
    assert {s.resource["service.name"] for s in spans} == {"observed"}


def test_demo_traces_over_grpc(grpc_receiver: GrpcReceiver, procs: list[Proc], tmp_path: Path) -> None:
    # the demo is a live py-libp2p swarm: three nodes, each its own service instance
    args = ["demo", "--nodes", "3", "--otlp.endpoint", grpc_receiver.endpoint, "--otlp.protocol", "grpc"]
    proc = start_exporter(args, tmp_path, env=FAST_BATCH)
    procs.append(proc)
    wait_for(
        lambda: (
            {"libp2p.connection", "libp2p.stream", "libp2p.dht.query"} <= {s.span.name for s in grpc_receiver.spans()}
        ),
        30,
        "all span kinds",
    )
    assert proc.stop() == 0
    spans = grpc_receiver.spans()
    ids = {s.resource["service.instance.id"] for s in spans}
    assert ids and all(i.startswith("12D3KooW") for i in ids)
    conns = {s.span.span_id for s in spans if s.span.name == "libp2p.connection"}
    streams = [s for s in spans if s.span.name == "libp2p.stream"]
    assert streams and all(
        s.span.parent_span_id in conns for s in streams if not s.attrs.get("libp2p.span.open_at_shutdown")
    )


@pytest.mark.parametrize("trouble", ["down", "slow"])
def test_collector_in_trouble_does_not_stop_metrics(
    trouble: str, fixture_path: Path, http_receiver: HttpReceiver, procs: list[Proc], tmp_path: Path
) -> None:
    if trouble == "down":
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    else:
        http_receiver.delay_s = 5.0  # answers long after the exporter gave up
        endpoint = http_receiver.endpoint
    args = ["replay", str(fixture_path), "--speed", "5", "--loop", "--otlp.endpoint", endpoint, "--otlp.timeout", "0.5"]
    proc = start_exporter(args, tmp_path, env=FAST_BATCH)
    procs.append(proc)
    node = "sample-1min"

    def failed() -> float:
        return sample(proc, "libp2p_exporter_span_exports_total", node=node, result="failure") or 0.0

    wait_for(lambda: failed() >= 2, 30, "failed exports to be counted")
    assert sample(proc, "libp2p_exporter_spans_export_failed_total", node=node) > 0
    assert sample(proc, "libp2p_exporter_spans_exported_total", node=node) == 0
    # The pipeline and the metrics keep going meanwhile: snapshots keep arriving, scrapes stay quick.
    before = sample(proc, "libp2p_exporter_snapshots_total", node=node) or 0.0
    wait_for(lambda: (sample(proc, "libp2p_exporter_snapshots_total", node=node) or 0) > before + 2, 20, "snapshots")
    started = time.monotonic()
    assert sample(proc, "libp2p_exporter_up", node=node) == 1.0
    assert time.monotonic() - started < 2.0
    if trouble == "slow":
        assert http_receiver.calls > 0 and not http_receiver.spans()
    started = time.monotonic()
    assert proc.stop(timeout=20) == 0
    assert time.monotonic() - started < 15.0  # shutdown waits for the collector only so long


# Python that cannot import the OpenTelemetry packages (the otel extra not installed), then the CLI.
_NO_OTEL = "import sys; sys.modules['opentelemetry'] = None; from exporter.app.cli import main; sys.exit(main())"


def test_without_the_otel_extra_tracing_fails_in_one_line_and_the_rest_runs(fixture_path: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.procs import REPO

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _NO_OTEL, *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        )

    plain = run("inspect", str(fixture_path))  # the whole CLI imports without the extra
    assert plain.returncode == 0, plain.stderr
    listen = f"127.0.0.1:{free_port()}"
    traced = run("replay", str(fixture_path), "--web.listen-address", listen, "--otlp.endpoint", "http://127.0.0.1:9")
    assert traced.returncode != 0
    assert "pip install 'libp2p-exporter[otel]'" in traced.stderr
    assert "Traceback" not in traced.stderr and len(traced.stderr.strip().splitlines()) == 1, traced.stderr
