"""Live-mode configuration: precedence, validation with line numbers, check-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.app.cli import main
from exporter.app.config import ConfigError, build, load_file, parse_duration, parse_size
from exporter.app.live import default_to_live
from exporter.sources.options import SessionOptions

GOOD = """\
web:
  listen_address: 127.0.0.1:9900
defaults:
  interval: 2s
  labels: {env: lab}
session:
  backoff_max: 10s
record:
  dir: /tmp/rec
  max_size: 1MiB
targets:
  - ws://10.0.0.1:8080/introspect
  - url: ws://10.0.0.2:8080/introspect
    name: boot
    interval: 500ms
    labels: {role: bootstrap}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yml"
    p.write_text(text)
    return p


def test_file_values(tmp_path: Path) -> None:
    cfg = build({}, [], str(write(tmp_path, GOOD)), env={})
    assert cfg.serving.listen == "127.0.0.1:9900"
    assert [t.name for t in cfg.targets] == ["10.0.0.1:8080", "boot"]
    assert [t.interval_ms for t in cfg.targets] == [2000, 500]
    assert cfg.targets[1].labels == {"env": "lab", "role": "bootstrap"}
    assert cfg.options.backoff_max_s == 10.0
    assert cfg.recording.max_bytes == 1 << 20


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    path = str(write(tmp_path, GOOD))
    env = {"LIBP2P_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:9901", "LIBP2P_EXPORTER_INTERVAL": "3s"}
    cfg = build({}, [], path, env=env)
    assert cfg.serving.listen == "127.0.0.1:9901"  # env beats file
    assert cfg.targets[0].interval_ms == 3000 and cfg.targets[1].interval_ms == 500  # a target's own wins
    cfg = build({"listen": "127.0.0.1:9902", "interval": 4.0}, [], path, env=env)
    assert cfg.serving.listen == "127.0.0.1:9902" and cfg.targets[0].interval_ms == 4000  # flag beats env
    # targets are one setting: flags replace the environment's, which replace the file's
    env["LIBP2P_EXPORTER_TARGETS"] = "a=ws://h1:1/introspect, ws://h2:2/introspect"
    assert [t.name for t in build({}, [], path, env=env).targets] == ["a", "h2:2"]
    assert [t.name for t in build({}, ["ws://h3:3/x"], path, env=env).targets] == ["h3:3/x"]
    # the config file itself can come from the environment
    assert build({}, [], None, env={"LIBP2P_EXPORTER_CONFIG": path}).serving.listen == "127.0.0.1:9900"


BAD = """\
web:
  listen_address: 127.0.0.1:9900
  colour: blue
defaults:
  interval: soon
targets:
  - url: http://10.0.0.1/introspect
  - name: nourl
  - url: ws://h/introspect
    labels: {node: x, "bad-name": y}
    interval: -1s
"""


def test_errors_name_line_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_file(write(tmp_path, BAD))
    text = "\n".join(err.value.problems)
    assert "cfg.yml:3: web.colour: unknown key" in text
    assert "cfg.yml:5: defaults.interval: 'soon' is not a duration" in text
    assert "cfg.yml:7: targets[0].url: 'http://10.0.0.1/introspect' is not a ws://" in text
    assert "cfg.yml:8: targets[1]: url is required" in text
    assert "cfg.yml:10: targets[2].labels.node: label 'node' is set by the exporter" in text
    assert "targets[2].labels.bad-name: not a valid Prometheus label name" in text
    assert "cfg.yml:11: targets[2].interval: must not be negative" in text
    assert len(err.value.problems) == 7


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cfg.yml:3: not valid YAML"):
        load_file(write(tmp_path, "web:\n  listen_address: a\n   oops: b\n"))


def test_duplicate_names_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="used twice"):
        build({}, ["ws://a:1/introspect", "ws://a:1/introspect"], None, env={})


def test_duplicate_names_in_a_file_have_lines_and_come_with_the_other_problems(tmp_path: Path) -> None:
    """docs/live.md: check-config reports every problem at once, each as FILE:LINE: key: what."""
    text = (
        "defaults:\n  interval: soon\n"
        "targets:\n"
        "  - url: ws://a:1/introspect\n    name: dup\n"
        "  - url: ws://b:1/introspect\n    name: dup\n"
        "  - ws://c:1/introspect\n"
        "  - ws://c:1/introspect\n"
    )
    with pytest.raises(ConfigError) as err:
        load_file(write(tmp_path, text))
    problems = err.value.problems
    assert any("cfg.yml:2: defaults.interval" in p for p in problems)
    assert "cfg.yml:6: targets[1]: name 'dup' is already used by the target at line 4" in "\n".join(problems)
    assert "cfg.yml:9: targets[3]: name 'c:1' is already used by the target at line 8" in "\n".join(problems)
    assert len(problems) == 3


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "OK, 2 target(s)" in out and "boot: ws://10.0.0.2:8080/introspect every 500 ms" in out
    assert main(["check-config", str(write(tmp_path, BAD))]) == 1
    assert "cfg.yml:3: web.colour" in capsys.readouterr().err


def test_live_is_the_default_command() -> None:
    assert default_to_live(["--target", "ws://a:1"], env={}) == ["live", "--target", "ws://a:1"]
    assert default_to_live(["replay", "f"], env={}) == ["replay", "f"]
    assert default_to_live(["--help"], env={}) == ["--help"]
    assert default_to_live([], env={"LIBP2P_EXPORTER_TARGETS": "ws://a:1"}) == ["live"]
    assert default_to_live([], env={}) == []


def test_bad_flag_value_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "http://nope", "--interval", "later"]) == 2
    err = capsys.readouterr().err
    assert "--interval: 'later' is not a duration" in err


def test_units() -> None:
    assert parse_duration("500ms") == 0.5 and parse_duration("2m") == 120 and parse_duration(3) == 3
    assert parse_size("64MiB") == 64 << 20 and parse_size("1kb") == 1000 and parse_size(10) == 10


def test_live_mode_takes_the_label_caps_and_segment_cap() -> None:
    """README lists --labels.* and --protocol.max-segment-bytes as common to every serving command;
    live mode used to reject them ("unrecognized arguments") and always ran with the defaults."""
    from exporter.app.cli import build_parser
    from exporter.app.flags import settings_from_args
    from exporter.app.live import _flags
    from exporter.app.runtime import hub_for

    argv = ["live", "--target", "ws://a:1/introspect", "--labels.protocol-cap", "3", "--labels.other-cap", "1"]
    args = build_parser().parse_args([*argv, "--protocol.max-segment-bytes", "4096"])
    cfg = build(_flags(args), args.target, None, env={})
    hub = hub_for(settings_from_args(args).limits)
    assert hub.cardinality.protocol.cap == 3 and hub.cardinality.security.cap == 1
    assert cfg.options.max_segment_bytes == 4096
    plain = build_parser().parse_args(argv[:3])
    cfg = build(_flags(plain), plain.target, None, env={})
    hub = hub_for(settings_from_args(plain).limits)
    assert hub.cardinality.protocol.cap == 32 and cfg.options.max_segment_bytes == SessionOptions().max_segment_bytes


def test_flags_and_environment_get_the_file_checks_too() -> None:
    """--stale-intervals -1 made every node stale for good, silently; the file already refused it."""
    with pytest.raises(ConfigError, match="stale_intervals: must be positive"):
        build({"stale_intervals": -1.0}, ["ws://a:1/introspect"], None, env={})
    with pytest.raises(ConfigError, match="stale_intervals: must be positive"):
        build({}, ["ws://a:1/introspect"], None, env={"LIBP2P_EXPORTER_STALE_INTERVALS": "0"})
    with pytest.raises(ConfigError, match="interval: must be positive"):
        build({"interval": 0.0}, ["ws://a:1/introspect"], None, env={})


def test_an_unknown_key_lists_every_key_the_section_takes(tmp_path: Path) -> None:
    """`defaults.labels` is read beside the scalar settings; the "known:" list must name it too."""
    path = write(tmp_path, "defaults:\n  lables: {env: lab}\n")
    with pytest.raises(ConfigError) as err:
        load_file(path)
    (problem,) = err.value.problems
    assert "defaults.lables: unknown key (known: interval, labels, retention, stale_intervals)" in problem, problem
