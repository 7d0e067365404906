"""The replayed capture's exposition, with the exporter's own timing left out, for golden-file checks.

``python -m tests.support.exposition OUT_DIR`` replays the shared capture at ``--speed 0`` through the
real CLI and writes ``OUT_DIR/sample-1min.prom`` (Prometheus text) and ``sample-1min.openmetrics``;
the golden test compares the same bytes with ``tests/golden/`` (timing samples and process_* left out). A refactor that changes a single
sample, HELP line or family order shows up as a diff there.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from tests.support.procs import FIXTURE, http_get, start_exporter, wait_for

# Samples that measure the exporter itself (wall time, its garbage collections): their values
# differ from run to run.
TIMING = re.compile(r"^libp2p_exporter_(scrape_duration_seconds|gc_[a-z_]+_total)[ {]")
# The process's own metrics (prometheus_client's ProcessCollector): CPU, memory and fds differ on
# every run and by platform, so their families are left out whole (HELP, TYPE and samples).
PROCESS = re.compile(r"^(# (HELP|TYPE|UNIT) )?process_")
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
STATES, EVENTS = 30, 937  # what the capture holds (docs/protocol.md section 6)


def without_timing(body: str) -> str:
    """The exposition minus the sample lines of the timing gauges (their HELP and TYPE stay) and
    minus the process_* families."""
    lines = body.splitlines(keepends=True)
    return "".join(line for line in lines if not TIMING.match(line) and not PROCESS.match(line))


def replay_exposition(capture: Path, workdir: Path, *, keep_process: bool = False) -> dict[str, str]:
    """Replay ``capture`` at full speed in a real exporter process; both formats, timing removed
    (and process_* too unless ``keep_process``)."""
    strip = (lambda body: body) if keep_process else without_timing
    proc = start_exporter(["replay", str(capture), "--speed", "0"], workdir)
    try:
        done = (
            f'libp2p_exporter_snapshots_total{{node="{capture.name.split(".")[0]}"}} {float(STATES)}',
            f'libp2p_exporter_messages_total{{kind="event",node="{capture.name.split(".")[0]}"}} {float(EVENTS)}',
        )
        wait_for(lambda: all(d in http_get(proc.url + "/metrics") for d in done), 20.0, "every State and Event")
        return {
            "prom": strip(http_get(proc.url + "/metrics")),
            "openmetrics": strip(http_get(proc.url + "/metrics", headers={"Accept": OPENMETRICS})),
        }
    finally:
        proc.stop()


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else GOLDEN
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for ext, body in replay_exposition(FIXTURE, Path(tmp)).items():
            (out / f"{FIXTURE.name.split('.')[0]}.{ext}").write_text(body)
    print(f"wrote the exposition of {FIXTURE.name} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
