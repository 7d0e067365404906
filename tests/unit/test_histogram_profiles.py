"""Issue 12 part 4: histogram profiles. The default keeps go-libp2p's layouts and every label; the
lean profile costs less than half the series of a synthetic node and keeps every total exact; bad
per-family overrides are one line each, naming file, line and key."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from exporter.app.cli import build_parser, main
from exporter.app.config import ConfigError, build
from exporter.app.flags import settings_from_args
from exporter.app.runtime import build_hub, hub_for
from exporter.generator import SyntheticNode
from exporter.mappers.swarm import Swarm
from exporter.model.histogram import CONNECTION_DURATION_BUCKETS, HANDSHAKE_LATENCY_BUCKETS
from exporter.model.histogram_profiles import (
    CONNECTION_DURATION,
    FAMILIES,
    HANDSHAKE_LATENCY,
    STREAM_DURATION,
    check_buckets,
    check_labels,
    profile,
)
from exporter.model.labels import Cardinality
from exporter.settings import Limits
from exporter.sinks.prometheus import Exposition

STEPS = 120
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def exposition(histograms: str) -> str:
    hub = build_hub(Cardinality(histograms=profile(histograms)))
    node = SyntheticNode(connections=50, streams_per_conn=3, seed=1, peerstore=True)
    for msg in node.messages(STEPS):
        hub.ingest("n", msg)
    return Exposition(hub, process=False).metrics().decode()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, line
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


@pytest.fixture(scope="module")
def both() -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {name: samples(exposition(name)) for name in ("default", "lean")}


def per_family(rows: list[tuple[str, dict[str, str], float]]) -> Counter[str]:
    """Series per family of the node's own (the exporter-wide families carry no ``node`` label)."""
    return Counter(
        re.sub(r"_(bucket|count|sum|gcount|gsum|total)$", "", name) for name, labels, _ in rows if labels.get("node")
    )


def test_default_profile_is_go_libp2p_layouts_with_every_label() -> None:
    default = profile()
    assert default.layout(CONNECTION_DURATION).buckets is CONNECTION_DURATION_BUCKETS
    assert default.layout(HANDSHAKE_LATENCY).buckets is HANDSHAKE_LATENCY_BUCKETS
    for name, fam in FAMILIES.items():
        layout = default.layout(name)
        assert layout.whole and layout.labels == fam.labels and layout.buckets == fam.buckets
        assert layout.key(("a",) * len(fam.labels)) == ("a",) * len(fam.labels)
    assert Cardinality().histograms == default and not default.warnings() and not profile("lean").warnings()


def test_series_per_node_default_and_lean(both: dict[str, list[tuple[str, dict[str, str], float]]]) -> None:
    """The figures docs/metrics.md states (bench/series.py measures the same node after 300 steps)."""
    default, lean = per_family(both["default"]), per_family(both["lean"])
    assert sum(default.values()) == 1413 and sum(lean.values()) == 628
    assert sum(lean.values()) < 0.5 * sum(default.values())
    # Every non-histogram family is exactly as it was.
    hist = {name for name in FAMILIES} | {
        "libp2p_peerstore_addresses_per_peer",
        "libp2p_peerstore_latency_ewma_seconds",
    }
    assert {k: v for k, v in default.items() if k not in hist} == {k: v for k, v in lean.items() if k not in hist}
    # One combination of a lean connection-duration histogram: 14 bounds, +Inf, _count, _sum.
    assert profile("lean").layout(CONNECTION_DURATION).series() == 17
    assert lean[CONNECTION_DURATION] % 17 == 0 and default[CONNECTION_DURATION] % 28 == 0


def test_lean_keeps_every_total_and_only_default_bounds(
    both: dict[str, list[tuple[str, dict[str, str], float]]],
) -> None:
    """Dropped labels sum observations; the bounds kept read the same counts as the default's."""
    sums: dict[str, dict[tuple[str, str, tuple[tuple[str, str], ...]], float]] = {}
    for name, rows in both.items():
        acc: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        for metric, labels, value in rows:
            family = re.sub(r"_(bucket|count|sum)$", "", metric)
            if family not in FAMILIES:
                continue
            kept = profile("lean").layout(family).labels
            key = tuple((k, v) for k, v in labels.items() if k in kept or k in ("le", "node"))
            acc[(family, metric, key)] += value
        sums[name] = acc
    lean_keys = set(sums["lean"])
    assert lean_keys <= set(sums["default"]), "a lean series the default does not have (a bound not in go-libp2p's)"
    for key in lean_keys:
        assert sums["lean"][key] == pytest.approx(sums["default"][key]), key
    assert any(metric.endswith("_count") and value > 0 for (_, metric, _), value in sums["lean"].items())
    les = {labels["le"] for metric, labels, _ in both["lean"] if metric == CONNECTION_DURATION + "_bucket"}
    assert "8.0" in les  # the short-lived rule's bound


def test_lean_drops_labels_the_dashboards_do_not_group_by(
    both: dict[str, list[tuple[str, dict[str, str], float]]],
) -> None:
    names = {metric: set(labels) for metric, labels, _ in both["lean"]}
    assert names[CONNECTION_DURATION + "_bucket"] == {"node", "dir", "transport", "le"}
    assert names[HANDSHAKE_LATENCY + "_count"] == {"node", "transport"}
    assert names[STREAM_DURATION + "_count"] == {"node", "protocol"}


def test_no_labels_at_all_is_one_combination() -> None:
    hist = profile().override(CONNECTION_DURATION, (1.0, 8.0), ())
    hub = build_hub(Cardinality(histograms=hist))
    node = SyntheticNode(connections=20, seed=2)
    for msg in node.messages(30):
        hub.ingest("n", msg)
    rows = [
        r for r in samples(Exposition(hub, process=False).metrics().decode()) if r[0].startswith(CONNECTION_DURATION)
    ]
    assert [(m, lab.get("le")) for m, lab, _ in rows] == [
        (CONNECTION_DURATION + "_bucket", "1.0"),
        (CONNECTION_DURATION + "_bucket", "8.0"),
        (CONNECTION_DURATION + "_bucket", "+Inf"),
        (CONNECTION_DURATION + "_count", None),
        (CONNECTION_DURATION + "_sum", None),
    ]
    assert rows[2][2] == rows[3][2] > 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "non-empty list"),
        ("1, 2", "non-empty list"),
        ([1, "x"], "'x' is not a number"),
        ([True], "is not a number"),
        ([0, 1], "finite and positive"),
        ([-1], "finite and positive"),
        ([1, float("inf")], "finite and positive"),
        ([float("nan")], "finite and positive"),
        ([1, 2, 2], "strictly increasing (2 after 2)"),
        ([8, 4], "strictly increasing (4 after 8)"),
    ],
)
def test_bad_buckets(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_buckets(value)


def test_buckets_and_labels_accepted() -> None:
    assert check_buckets([1, 2.5, 8]) == (1.0, 2.5, 8.0)
    assert check_labels(CONNECTION_DURATION, ["transport", "dir"]) == ("transport", "dir")
    assert check_labels(CONNECTION_DURATION, []) == ()
    layout = profile().override(CONNECTION_DURATION, None, ("transport", "dir")).layout(CONNECTION_DURATION)
    assert layout.labels == ("dir", "transport")  # the family's order, whatever order was given
    assert layout.key(("inbound", "tcp", "noise", "yamux", "ip4")) == ("inbound", "tcp")
    for value, message in (
        (["peer"], "not a label of this family"),
        (["dir", "dir"], "listed twice"),
        ("dir", "a list"),
    ):
        with pytest.raises(ValueError, match=message):
            check_labels(CONNECTION_DURATION, value)


def test_a_layout_without_8s_says_which_rule_loses_its_data() -> None:
    hist = profile("lean").override(CONNECTION_DURATION, (1.0, 10.0), None).override(STREAM_DURATION, None, ())
    (short, streams) = hist.warnings()
    assert "no 8 s bound" in short and "Libp2pShortLivedConnections" in short
    assert "drops the protocol label" in streams


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cfg.yml"
    path.write_text(text)
    return str(path)


FILE = """\
histograms:
  profile: lean
  families:
    libp2p_swarm_connection_duration_seconds:
      buckets: [1, 8, 60, 1.0e3]
    libp2p_swarm_handshake_latency_seconds:
      labels: [transport, security]
"""


def test_config_file_env_and_flag(tmp_path: Path) -> None:
    path = write(tmp_path, FILE)
    cfg = build({}, [], path, env={})
    assert cfg.histograms.name == "lean+custom"
    assert cfg.histograms.layout(CONNECTION_DURATION).buckets == (1.0, 8.0, 60.0, 1000.0)
    assert cfg.histograms.layout(CONNECTION_DURATION).labels == ("dir", "transport")  # lean's labels
    assert cfg.histograms.layout(HANDSHAKE_LATENCY).labels == ("transport", "security")
    assert cfg.histograms.layout(STREAM_DURATION) == profile("lean").layout(STREAM_DURATION)
    # The profile: flag > environment > file; the file's family overrides apply on top of it.
    env = {"LIBP2P_EXPORTER_HISTOGRAMS_PROFILE": "default"}
    cfg = build({}, [], path, env=env)
    assert cfg.histograms.layout(STREAM_DURATION) == profile().layout(STREAM_DURATION)
    assert cfg.histograms.layout(CONNECTION_DURATION).labels == FAMILIES[CONNECTION_DURATION].labels
    assert cfg.histograms.layout(CONNECTION_DURATION).buckets == (1.0, 8.0, 60.0, 1000.0)
    cfg = build({"histograms_profile": "lean"}, [], None, env=env)
    assert cfg.histograms == profile("lean")
    assert build({}, [], None, env={}).histograms == profile()


def test_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
histograms:
  profile: slim
  families:
    libp2p_swarm_connection_duration_seconds:
      buckets: [1, 8, 4]
      labels: [transport, peer_id]
    libp2p_nope: {buckets: [1]}
    libp2p_stream_duration_seconds: [1, 2]
  colour: red
""",
    )
    with pytest.raises(ConfigError) as err:
        build({}, [], path, env={})
    assert err.value.problems == [
        f"{path}:2: histograms.profile: 'slim' is not a histogram profile (one of default, lean)",
        f"{path}:5: histograms.families.libp2p_swarm_connection_duration_seconds.buckets: "
        "must be strictly increasing (4 after 8)",
        f"{path}:6: histograms.families.libp2p_swarm_connection_duration_seconds.labels: 'peer_id' is not a "
        "label of this family (its labels: dir, transport, security, muxer, ip_version)",
        f"{path}:7: histograms.families.libp2p_nope: not a configurable histogram family (one of "
        + ", ".join(FAMILIES)
        + ")",
        f"{path}:8: histograms.families.libp2p_stream_duration_seconds: expected a mapping (buckets, labels)",
        f"{path}:9: histograms.colour: unknown key (known: families, profile)",
    ]
    with pytest.raises(ConfigError, match=r"HISTOGRAMS_PROFILE: 'thin' is not"):
        build({}, [], None, env={"LIBP2P_EXPORTER_HISTOGRAMS_PROFILE": "thin"})


def test_check_config_shows_the_profile_and_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FILE.replace("[1, 8, 60, 1.0e3]", "[1, 10, 60]"))
    assert main(["check-config", path]) == 0
    out = capsys.readouterr().out
    assert "histograms: lean+custom (libp2p_swarm_connection_duration_seconds: 3 bounds, labels [dir, transport]" in out
    assert "warning: libp2p_swarm_connection_duration_seconds has no 8 s bound" in out


def test_flag_reaches_the_mappers(capsys: pytest.CaptureFixture[str]) -> None:
    hub = hub_for(Limits(histograms_profile="lean"))
    (swarm,) = [m for m in hub.mappers if isinstance(m, Swarm)]
    assert swarm.duration == profile("lean").layout(CONNECTION_DURATION)
    assert hub_for(Limits()).cardinality.histograms == profile()
    assert hub_for(
        settings_from_args(build_parser().parse_args(["replay", "x", "--histograms.profile", "lean"])).limits
    ).cardinality.histograms == profile("lean")
    with pytest.raises(SystemExit):
        main(["replay", "x.capture", "--histograms.profile", "thin"])
    assert "invalid choice: 'thin'" in capsys.readouterr().err
