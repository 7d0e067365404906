"""The exporter's CLI with pubsub trace files (tests/fixtures/pubsub): `live --pubsub.file` serves exactly
the metrics that mapping the same file in-process gives, and a damaged file costs only its damage,
with one log line and a counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.mappers.pubsub import PubsubMetrics
from exporter.sources.pubsub_trace import read_trace_file
from tests.support.procs import Proc, http_get, start_exporter
from tests.support.reference import MetricsWriter

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "pubsub"
NOT_COMPARED = ("libp2p_pubsub_tracked_messages", "libp2p_exporter_")


def expected(path: Path) -> dict[str, float]:
    events, _ = read_trace_file(path)
    assert events
    m = PubsubMetrics()
    m.ingest_all(events)
    m.flush()
    out = MetricsWriter()
    m.collect_into(out)
    return {_key(s.name, s.labels): s.value for f in out.metrics() for s in f.samples}


def _key(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def scraped(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("libp2p_pubsub_"):
            series, _, value = line.rpartition(" ")
            name, _, rest = series.partition("{")
            labels = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",")) if rest else {}
            out[_key(name, {k: v.strip('"') for k, v in labels.items()})] = float(value)
    return out


@pytest.mark.parametrize("name", ["node0.pb", "node1.json", "traced.pb.gz"])
def test_live_serves_a_trace_files_metrics(name: str, tmp_path: Path, procs: list[Proc]) -> None:
    proc = start_exporter(["live", "--pubsub.file", str(DATA / name), "--pubsub.window", "0"], tmp_path)
    procs.append(proc)
    got = scraped(http_get(proc.url + "/metrics"))
    want = {k: v for k, v in expected(DATA / name).items() if not k.startswith(NOT_COMPARED)}
    assert want and {k: v for k, v in got.items() if k in want} == pytest.approx(want)
    assert not [k for k in want if k not in got]
    assert "damaged" not in proc.output()


def test_a_damaged_file_is_one_line_and_a_counter(tmp_path: Path, procs: list[Proc]) -> None:
    from exporter.protocol.pubsub_codec import read_varint

    data = bytearray((DATA / "node0.pb").read_bytes())
    pos = 0
    for _ in range(5):  # to the sixth record's length prefix
        length, used = read_varint(data, pos) or (0, 0)
        pos += used + length
    data[pos : pos + 3] = b"\xff\xff\x7f"  # a length that points nowhere sensible
    damaged = tmp_path / "damaged.pb"
    damaged.write_bytes(bytes(data) + b"\x05\x08")
    proc = start_exporter(["live", "--pubsub.file", str(damaged)], tmp_path / "run")
    procs.append(proc)
    text = http_get(proc.url + "/metrics")
    log = proc.output()
    lines = [ln for ln in log.splitlines() if "damaged.pb" in ln]
    assert len(lines) == 1 and "damaged stretch(es)" in lines[0] and "Traceback" not in log
    errors = {k: v for k, v in scraped(text).items() if k.startswith("libp2p_pubsub_file_errors_total")}
    assert sum(errors.values()) >= 2  # the overwritten record and the torn tail
    published = sum(v for k, v in scraped(text).items() if k.startswith("libp2p_pubsub_delivered_messages_total"))
    assert published > 0  # the intact events around the damage were read
