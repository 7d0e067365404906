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
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    for name in ("introspection_pb2.py", "introspection_pb2.pyi", "pubsub_trace_pb2.py", "pubsub_trace_pb2.pyi"):
        fresh = (tmp_path / name).read_text()
        committed = (REPO / "exporter" / "protocol" / name).read_text()
        assert committed == fresh, f"{name} is stale: run `make proto` and commit"
