"""The shared capture replayed at full speed serves exactly the recorded exposition (tests/golden)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.exposition import GOLDEN, replay_exposition, without_timing


@pytest.mark.parametrize("ext", ["prom", "openmetrics"])
def test_replayed_capture_exposition_is_unchanged(fixture_path: Path, tmp_path: Path, ext: str) -> None:
    got = replay_exposition(fixture_path, tmp_path)[ext]
    want = (GOLDEN / f"{fixture_path.name.split('.')[0]}.{ext}").read_text()
    assert got == want, "exposition changed: diff it against tests/golden (python -m tests.support.exposition DIR)"


def test_timing_filter_keeps_everything_else() -> None:
    body = (
        "# HELP libp2p_exporter_scrape_duration_seconds Time.\n"
        "libp2p_exporter_scrape_duration_seconds 0.01\n"
        "libp2p_exporter_nodes 1.0\n"
        "# HELP process_open_fds Number of open file descriptors.\n"
        "# TYPE process_open_fds gauge\n"
        "process_open_fds 12.0\n"
        "# EOF\n"
    )
    assert without_timing(body) == (
        "# HELP libp2p_exporter_scrape_duration_seconds Time.\nlibp2p_exporter_nodes 1.0\n# EOF\n"
    )


def test_replayed_capture_serves_process_metrics(fixture_path: Path, tmp_path: Path) -> None:
    """The process_* families the golden comparison leaves out are there, in both formats."""
    for body in replay_exposition(fixture_path, tmp_path, keep_process=True).values():
        assert "\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes " in body
        assert "\nprocess_cpu_seconds_total " in body
