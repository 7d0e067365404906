"""The committed protobuf module is what protoc generates from proto/*.proto today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import REPO


def test_generated_module_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{REPO / 'proto'}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        str(REPO / "proto" / "introspection.proto"),
        str(REPO / "proto" / "pubsub_trace.proto"),
        str(REPO / "proto" / "prometheus_metrics.proto"),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    names = ("introspection", "pubsub_trace", "prometheus_metrics")
    for name in [f"{n}_pb2.{ext}" for n in names for ext in ("py", "pyi")]:
        fresh = (tmp_path / name).read_text()
        committed = (REPO / "exporter" / "protocol" / name).read_text()
        assert committed == fresh, f"{name} is stale: run `make proto` and commit"


def test_generated_go_module_is_fresh(tmp_path: Path) -> None:
    """producers/go/pb is generated from the same proto/introspection.proto (one schema source)."""
    pytest.importorskip("grpc_tools")
    plugin = REPO / ".gobin" / "protoc-gen-go"
    if not plugin.exists():
        pytest.fail("protoc-gen-go is missing: `make go-deps` installs the pinned version (make test does)")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{REPO / 'proto'}",
        f"--plugin=protoc-gen-go={plugin}",
        f"--go_out={tmp_path}",
        "--go_opt=paths=source_relative",
        "--go_opt=Mintrospection.proto=github.com/libp2p-exporter/libp2p-exporter/producers/go/pb",
        "introspection.proto",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    fresh = (tmp_path / "introspection.pb.go").read_text()
    committed = (REPO / "producers" / "go" / "pb" / "introspection.pb.go").read_text()
    assert committed == fresh, "producers/go/pb/introspection.pb.go is stale: run `make proto` and commit"
