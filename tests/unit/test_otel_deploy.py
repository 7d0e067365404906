"""The example collector config: every component a pipeline names is defined, OTLP ports are the standard ones."""

from __future__ import annotations

import yaml

from tests.support.collector import assert_pipelines_defined
from tests.support.procs import REPO


def test_collector_config_is_consistent() -> None:
    cfg = yaml.safe_load((REPO / "deploy" / "otel" / "otel-collector.yaml").read_text())
    assert_pipelines_defined(cfg)
    assert "deploy/otel/otel-collector.yaml" in (REPO / "docs" / "tracing.md").read_text()
