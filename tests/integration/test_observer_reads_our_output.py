"""The libp2p observer UI's own data layer reads what we write, and nothing in it throws.

The observer-toolkit's `data/` and `proto/` packages (MIT, third-party, vendored unmodified in
tests/observer/vendor/observer-toolkit) run under
Node with the npm versions its lockfile pins (tests/observer/package-lock.json). They load, as the UI
does, a `generate` file, a `--record` recording of a live `demo` node and a live Endpoint session's
WebSocket frames; tests/observer/read_with_observer.js then runs every selector the UI's widgets use
over every State and Event. Each source must decode to the counts `libp2p-exporter inspect` gives,
with no selector throwing, no checksum error, no byte left over, no event content key without a
declared property, and no event hidden by a State whose snapshot_duration_ms is not its period.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.observer import (
    KINDS,
    Reader,
    assert_read_cleanly,
    cli,
    inspect_counts,
    ui_session,
)
from tests.support.procs import REPO, Proc, start_exporter, wait_for


def test_the_observer_reads_a_generated_file(observer: Reader, tmp_path: Path) -> None:
    path = tmp_path / "synthetic.mock"
    cli("generate", str(path), "--steps", "30", "--seed", "1")
    expected = inspect_counts(path)
    assert expected["state"] == 31
    report = observer([{"name": "generate", "kind": "file", "path": str(path)}])["generate"]
    assert_read_cleanly(report, expected)
    # the case that crashed the UI is in the file, and it now reads: connections with an empty StreamList
    assert report["seen"]["connectionsWithoutStreams"] > 0
    assert report["seen"]["missingClosedConnections"] > 0
    assert report["seen"]["hiddenEvents"] == 0


def test_the_observer_reads_its_own_sample_the_same_way(observer: Reader) -> None:
    """The script against data the observer itself made: so a failure above is about our data."""
    sample = REPO / "tests" / "fixtures" / "observer-toolkit" / "sample-1min.mock"
    report = observer([{"name": "sample", "kind": "file", "path": str(sample)}])["sample"]
    assert report["failureCount"] == 0, report["failures"]
    assert {kind: report["decoded"][kind] for kind in KINDS} == inspect_counts(sample)
    assert report["seen"]["connections"] == 234 and report["seen"]["events"] == 937


async def test_the_observer_reads_a_demo_recording_and_a_live_endpoint_session(
    observer: Reader, tmp_path: Path, procs: list[Proc]
) -> None:
    pytest.importorskip("libp2p")
    demo = start_exporter(
        ["demo", "--nodes", "3", "--churn", "drop", "--churn-every", "2", "--seed", "1"], tmp_path / "demo"
    )
    procs.append(demo)
    urls = wait_for(
        lambda: re.findall(r"^  node-\d+\s+\S+\s+(ws://\S+)$", demo.output(), re.M), 60, "the demo's node list"
    )
    url = urls[0]
    recordings = tmp_path / "recordings"
    recorder = start_exporter(
        ["live", "--target", f"node0={url}", "--interval", "1s", "--record", str(recordings)], tmp_path / "live"
    )
    procs.append(recorder)
    frames_file = tmp_path / "session.frames"
    await ui_session(url, 12, frames_file)
    assert recorder.stop() == 0, recorder.output()  # SIGTERM: the recording is complete on disk
    demo.stop()
    (recording,) = sorted(recordings.rglob("*.libp2p.trace"))
    sources = [
        {"name": "recording", "kind": "file", "path": str(recording)},
        {"name": "live", "kind": "frames", "path": str(frames_file)},
    ]
    reports = observer(sources)
    for name, counted in (("recording", recording), ("live", frames_file.with_suffix(".mock"))):
        expected = inspect_counts(counted)
        assert expected["state"] >= 5 and expected["runtime"] >= 1, (name, expected)
        assert_read_cleanly(reports[name], expected)
    # the UI's live session: 12 States, each showing the events up to it
    assert reports["live"]["decoded"]["state"] >= 12
    assert "py-libp2p" in cli("inspect", str(recording))
