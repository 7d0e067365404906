"""The example collector config: every component a pipeline names is defined, OTLP ports are the standard ones."""

from __future__ import annotations

import yaml

from tests.support.procs import REPO


def test_collector_config_is_consistent() -> None:
    cfg = yaml.safe_load((REPO / "deploy" / "otel" / "otel-collector.yaml").read_text())
    traces = cfg["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert traces[kind], kind
        for name in traces[kind]:
            assert name in cfg[kind], f"{kind[:-1]} {name} used by the pipeline but not defined"
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert "deploy/otel/otel-collector.yaml" in (REPO / "docs" / "tracing.md").read_text()
