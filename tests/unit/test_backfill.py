"""Backfill: the timestamped OpenMetrics writer, input ordering and overlap, and the command's errors.

promtool itself (the real consumer) checks the written files (tests/integration/test_promtool_checks.py);
the structure checker below states
the OpenMetrics rules promtool relies on, because prometheus_client's OpenMetrics parser mis-reads
timestamped histograms (it drops a MetricPoint's later samples when the instant changes).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app.backfill import node_of
from exporter.app.cli import main
from exporter.app.progress import Progress
from exporter.generator import SyntheticNode
from exporter.model.catalogue import Family, Writer
from exporter.model.histogram import Histogram
from exporter.protocol import pb
from exporter.sinks.openmetrics_file import TimestampedOpenMetrics, format_ts
from exporter.sources.capture import CaptureWriter, write_capture

LINE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+) (?P<ts>\S+)$")


def check_openmetrics(text: str) -> dict[str, list[tuple[int, float]]]:
    """Families once and not interleaved, each series group contiguous, instants increasing per series.

    Returns each series' points (milliseconds as Prometheus' parser computes them, value).
    """
    assert text.endswith("# EOF\n")
    types: dict[str, str] = {}
    family = ""
    done_groups: set[tuple[str, str]] = set()
    group: tuple[str, str] | None = None
    points: dict[str, list[tuple[int, float]]] = {}
    for line in text.splitlines()[:-1]:
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert name not in types, f"family {name} written twice"
            types[name] = typ
            family = name
            continue
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, line
        assert m["name"].startswith(family), f"{m['name']} outside its family {family}"
        labels = m["labels"] or ""
        key = (family, re.sub(r',?le="[^"]*"', "", labels))
        if key != group:
            assert key not in done_groups, f"series group {key} interleaved"
            if group is not None:
                done_groups.add(group)
            group = key
        series = f"{m['name']}{{{labels}}}"
        ms = int(float(m["ts"]) * 1000)  # what Prometheus' parser does
        got = points.setdefault(series, [])
        assert not got or got[-1][0] < ms, f"{series}: {ms} not after {got[-1][0]}"
        got.append((ms, float(m["value"])))
    return points


def test_timestamps_come_back_to_the_exact_millisecond() -> None:
    rng = random.Random(7)
    naive_wrong = 0
    for _ in range(20000):
        ms = rng.randrange(0, 4_102_444_800_000)
        naive_wrong += int(float(f"{ms // 1000}.{ms % 1000:03d}") * 1000) != ms
        assert int(float(format_ts(ms)) * 1000) == ms
    assert naive_wrong > 0  # the plain S.mmm form really would lose a millisecond sometimes


Write = Callable[[Writer], None]


def _gauge(name: str, value: float, **labels: str) -> Write:
    return lambda out: out.gauge(Family(name, "gauge", "doc"), value, labels)


def _counter(name: str, value: float, **labels: str) -> Write:
    return lambda out: out.counter(Family(name, "counter", "doc"), value, labels)


def _hist(name: str, count: int, **labels: str) -> Write:
    hist = Histogram((1.0,))
    hist.counts, hist.count, hist.total = [count, 0], count, float(count) / 2
    return lambda out: out.histogram(Family(name, "histogram", "doc"), hist, labels)


def _add(writer: TimestampedOpenMetrics, scope: str, ts_ms: int, writes: list[Write]) -> int:
    at = writer.instant(scope, ts_ms)
    for write in writes:
        write(at)
    return at.close()


def _write(writer: TimestampedOpenMetrics, path: Path) -> str:
    with open(path, "w") as fh:
        writer.write(fh)
    return path.read_text()


def test_grouped_ordered_with_zeros_for_vanished_gauges_and_born_counters(tmp_path: Path) -> None:
    w = TimestampedOpenMetrics(tmp_path, extra_labels={"job": "j"})
    # Two scopes interleaved in time, as several nodes are.
    _add(w, "a", 1000, [_gauge("g", 1, node="a", k="x"), _counter("c", 1, node="a"), _hist("h", 1, node="a")])
    _add(w, "b", 1500, [_gauge("g", 5, node="b", k="x")])
    _add(w, "a", 2000, [_gauge("g", 2, node="a", k="y"), _counter("c", 2, node="a"), _hist("h", 2, node="a")])
    _add(w, "a", 3000, [_gauge("g", 3, node="a", k="y"), _counter("c", 3, node="a"), _counter("c", 1, node="a", x="1")])
    with pytest.raises(ValueError):
        w.instant("a", 3000)
    text = _write(w, tmp_path / "out.om")
    pts = check_openmetrics(text)
    assert pts['g{node="a",k="x",job="j"}'] == [(1000, 1.0), (2000, 0.0)]  # vanished: one 0, then nothing
    assert pts['g{node="a",k="y",job="j"}'] == [(2000, 2.0), (3000, 3.0)]
    assert pts['c_total{node="a",x="1",job="j"}'] == [(2000, 0.0), (3000, 1.0)]  # born: 0 at the instant before
    assert pts['c_total{node="a",job="j"}'] == [(1000, 1.0), (2000, 2.0), (3000, 3.0)]  # first instant: no 0
    # The histogram's last point is kept where it was: it vanished at 3000 but is no gauge.
    assert pts['h_count{node="a",job="j"}'] == [(1000, 1.0), (2000, 2.0)]
    assert text.count("# TYPE g gauge") == 1
    assert w.vanished_zeros == 1 and w.birth_zeros == 1


def test_spilled_runs_write_the_same_file(tmp_path: Path) -> None:
    def fill(w: TimestampedOpenMetrics) -> None:
        for i in range(40):
            metrics = [_gauge("g", i, node="a", k=str(i % 3)), _counter("c", i, node="a"), _hist("h", i, node="a")]
            _add(w, "a", 1000 * (i + 1), metrics)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    kept, spilled = TimestampedOpenMetrics(tmp_path / "a"), TimestampedOpenMetrics(tmp_path / "b", spill_points=7)
    fill(kept)
    fill(spilled)
    assert len(list((tmp_path / "b").glob("run-*.bin"))) > 5
    assert _write(spilled, tmp_path / "s.om") == _write(kept, tmp_path / "k.om")


def _capture(path: Path, steps: int = 10, start_ms: int = 1_700_000_000_000, seed: int = 1) -> list[pb.ServerMessage]:
    msgs = list(
        SyntheticNode(connections=6, streams_per_conn=2, buckets=3, seed=seed, start_ms=start_ms).messages(steps)
    )
    write_capture(path, msgs)
    return msgs


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["backfill", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_overlapping_files_of_one_node_count_nothing_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap = tmp_path / "n.mock"
    msgs = _capture(cap, steps=12)
    code, single, _ = _run(capsys, str(cap), "--format", "openmetrics", "-o", str(tmp_path / "one.om"))
    assert code == 0
    # A second copy overlapping the whole first, and a later part that overlaps it by half.
    write_capture(tmp_path / "copy.mock", msgs)
    code, out, _ = _run(
        capsys, f"n={cap}", f"n={tmp_path / 'copy.mock'}", "--format", "openmetrics", "-o", str(tmp_path / "two.om")
    )
    assert code == 0
    assert "13 State(s) of node n already covered by an earlier file, skipped" in out
    assert (tmp_path / "one.om").read_text() == (tmp_path / "two.om").read_text()
    assert "13 States written" in out and "13 States written" in single


def test_out_of_order_and_backwards_states_are_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = SyntheticNode(connections=4, streams_per_conn=1, buckets=2, seed=3)
    states = []
    for _ in range(4):
        states.append(node.state())
        node.step()
    late = pb.ServerMessage()
    late.CopyFrom(states[1])
    new_identity = node.runtime()
    new_identity.runtime.peer_id = "12D3KooWrestarted"
    back = pb.ServerMessage()
    back.CopyFrom(states[0])  # after a new identity the hub starts afresh, at an older instant
    msgs = [node.runtime(), states[0], states[1], states[2], late, states[3], new_identity, back]
    write_capture(tmp_path / "n.mock", msgs)
    code, out, _ = _run(capsys, str(tmp_path / "n.mock"), "--format", "openmetrics", "-o", str(tmp_path / "o.om"))
    assert code == 0, out
    assert "node n: States dropped as live mode drops them: 1 out of order" in out
    assert "1 State(s) not written: not after the node's last written State" in out
    assert "4 States written" in out
    check_openmetrics((tmp_path / "o.om").read_text())


def test_stdout_gets_the_openmetrics_and_stderr_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _capture(tmp_path / "n.mock", steps=3)
    code, out, err = _run(capsys, str(tmp_path / "n.mock"), "--format", "openmetrics", "-o", "-")
    assert code == 0
    points = check_openmetrics(out)
    assert len(points['libp2p_peers{node="n",job="libp2p-exporter",instance="backfill"}']) == 4
    assert "4 States written" in err
    assert not [s for s in points if s.startswith(("libp2p_exporter_scrape_duration", "libp2p_exporter_build"))]


@pytest.mark.parametrize(
    ("setup", "argv", "code", "message"),
    [
        ("nonempty", ["-o", "{tmp}/out"], 2, "exists and is not an empty directory"),
        ("", ["-o", "{tmp}/out", "--promtool", "{tmp}/no-promtool"], 2, "promtool not found"),
        ("", ["{tmp}/missing.mock", "-o", "{tmp}/out"], 1, "no such file"),
        ("nostate", ["-o", "{tmp}/out"], 1, "nothing to backfill"),
        ("omfile", ["--format", "openmetrics", "-o", "{tmp}/x.om"], 2, "exists; choose a new file name"),
        ("", ["--format", "openmetrics", "-o", "{tmp}/no/such/dir/x.om"], 1, "cannot write"),
    ],
)
def test_user_mistakes_are_one_line_and_an_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, argv: list[str], code: int, message: str
) -> None:
    cap = tmp_path / "n.mock"
    if setup == "nostate":
        with CaptureWriter(cap) as w:
            w.write(SyntheticNode(connections=1).runtime())
    else:
        _capture(cap, steps=2)
    if setup == "nonempty":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep").write_text("data")
    if setup == "omfile":
        (tmp_path / "x.om").write_text("")
    args = [a.format(tmp=tmp_path) for a in argv]
    if not any(a.endswith(".mock") for a in args):
        args.insert(0, str(cap))
    got, out, err = _run(capsys, *args)
    assert got == code
    assert err.count("\n") == 1 and err.startswith("libp2p-exporter backfill: ") and message in err, err
    assert "Traceback" not in out + err
    if setup == "nonempty":
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep"]


def test_recordings_of_one_target_share_its_node_label() -> None:
    assert node_of(Path("rec/node-x/node-x-20261201T092109Z-0003.libp2p.trace")) == "node-x"
    assert node_of(Path("sample-1min.mock")) == "sample-1min"
    assert node_of(Path("a-b.libp2p.trace")) == "a-b"


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.text = ""
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(tty: bool) -> None:
    stream = _Stream(tty)
    progress = Progress(1000, stream, period_s=0.0)  # type: ignore[arg-type]
    progress.period_s = 0.0
    progress.advance(500, 3)
    progress.clear()
    if tty:
        assert stream.text.startswith("\rbackfill [###############") and "50%" in stream.text
        assert stream.text.endswith("\r\x1b[K")
    else:
        assert stream.text == "backfill: 50% of the input read, 3 States written\n"
    assert not math.isnan(progress.done)
    assert Counter(stream.text)["\n"] == (0 if tty else 1)
