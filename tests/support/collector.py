"""Checks on an OpenTelemetry Collector config that no otelcol binary here could make for us."""

from __future__ import annotations

from typing import Any


def assert_pipelines_defined(cfg: dict[str, Any]) -> None:
    """Every component the traces pipeline names is defined; OTLP comes in on the standard ports."""
    traces = cfg["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert traces[kind], kind
        for name in traces[kind]:
            assert name in cfg[kind], f"{kind[:-1]} {name} used by the pipeline but not defined"
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
