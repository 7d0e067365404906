"""bench/go_host_cost.py runs and measures what it says, on a tiny setup (its figures are not checked:
they need a quiet machine, bench/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import go_host_cost


def test_the_go_host_cost_bench_runs_every_mode(go_tools: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    bins = str(go_tools["introspect-node"].parent)
    go_host_cost.main(
        ["--bin", bins, "--conns", "3", "--seconds", "2", "--warmup", "1", "--per-process", "2", "--json", str(out)]
    )
    runs = {r["mode"]: r for r in json.loads(out.read_text())["runs"]}
    assert set(runs) == {"off", "installed", "on-1s"}
    for r in runs.values():
        assert r["conns"] == 3 and r["peer_processes"] == 2  # 3 peers laid out as 2 + 1
        assert r["cpu_cores"] > 0 and r["mallocs_per_s"] > 0 and r["goroutines"] > 0
    assert runs["on-1s"]["states_received"] >= 1  # a State a second reached the client
    assert runs["off"]["states_received"] == runs["installed"]["states_received"] == 0
