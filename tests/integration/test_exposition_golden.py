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
    )
    assert without_timing(body) == "# HELP libp2p_exporter_scrape_duration_seconds Time.\nlibp2p_exporter_nodes 1.0\n"
