"""The documentation stays true: the README is a short front door whose commands, modes and flags the
CLI really has; every link lands; the snippets in docs/ are what the code accepts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dashboards.generate import JSON_DIR, RULES_DIR
from tests.support.procs import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _cli(*args: str) -> str:
    """What the exporter's own CLI prints (run as a process, so this test does not depend on its modules)."""
    res = subprocess.run(
        [sys.executable, "-m", "exporter", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def _blocks(path: Path, lang: str) -> list[str]:
    return [body for fence, body in FENCE.findall(path.read_text()) if fence == lang]


def _slug(heading: str) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_the_front_door() -> None:
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; details belong in docs/"
    assert lines[0] == "# libp2p-exporter"
    first = FENCE.search(text)
    assert first and first.group(1) == "sh" and text.index(first.group(0)) < text.index("\n## ")
    assert [ln.split("#")[0].strip() for ln in first.group(2).splitlines()] == ["make demo", "make test"]
    for doc in [*DOCS, REPO / "deploy" / "README.md", REPO / "bench" / "README.md"]:
        assert f"({doc.relative_to(REPO)}" in text, f"README.md does not link {doc.relative_to(REPO)}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_lands(path: Path) -> None:
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.is_file(), f"{path.name}: link to missing {target}"
        if anchor:
            headings = re.findall(r"^#+\s+(.+)$", dest.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{path.name}: no heading for #{anchor} in {dest.name}"


def test_readme_modes_are_the_cli_commands() -> None:
    commands = re.search(r"\{([\w,-]+)\}", _cli("--help"))
    assert commands
    modes = README.read_text().partition("## Modes")[2].partition("\n## ")[0]
    for command in commands.group(1).split(","):
        assert f"`{command}" in modes, f"README's Modes section does not list `{command}`"


def test_readme_common_flags_are_taken_by_every_serving_command() -> None:
    table = README.read_text().partition("## Common flags")[2].partition("\n## ")[0]
    flags = re.findall(r"^\| `(--[\w.-]+)` \| `([^`]+)` \|", table, re.M)
    assert len(flags) == 12  # web (3), log (2), label caps and budgets (4), histogram profile, native, segment size
    helps = {command: _cli(command, "--help") for command in ("live", "replay", "demo")}
    for command, help_text in helps.items():
        for flag, _default in flags:
            assert f"{flag} " in help_text, f"{command} does not take {flag}"
    assert ("--log.level", "info") in flags and "(default info)" in helps["demo"]


def test_python_snippets_parse_and_are_formatted() -> None:
    snippets = [(doc, code) for doc in DOCS for code in _blocks(doc, "python")]
    assert snippets, "docs/producer.md shows how to introspect a py-libp2p host"
    ruff = Path(sys.executable).with_name("ruff")
    for doc, code in snippets:
        compile(code, doc.name, "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT: the snippet is an async body
        if ruff.exists():
            res = subprocess.run(
                [str(ruff), "format", "--check", "--stdin-filename", "snippet.py", "-"], input=code, text=True
            )
            assert res.returncode == 0, f"{doc.name}: snippet is not ruff-format clean"


def test_live_mode_config_example_passes_check_config(tmp_path: Path) -> None:
    """The config file docs/live.md shows is one the exporter accepts, and check-config still bites."""
    live = REPO / "docs" / "live.md"
    (config,) = [b for b in _blocks(live, "yaml") if "defaults:" in b]
    path = tmp_path / "targets.yml"
    path.write_text(config)
    assert "OK, 2 target(s)" in _cli("check-config", str(path))
    path.write_text(config.replace("interval: 2s", "interval: soon"))
    res = subprocess.run([sys.executable, "-m", "exporter", "check-config", str(path)], cwd=REPO, capture_output=True)
    assert res.returncode == 1 and b"is not a duration" in res.stderr
    (scrape,) = [yaml.safe_load(b) for b in _blocks(live, "yaml") if "scrape_configs:" in b]
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/probe"
    # Issue 13: the alert rules' job parameter must match the documented /probe job, or no alert fires.
    from dashboards.params import PARAMS

    assert re.fullmatch(str(PARAMS["job"].default), job["job_name"]), job["job_name"]
    assert [r["target_label"] for r in job["relabel_configs"]] == ["__param_target", "instance", "__address__"]


def test_histogram_profile_example_passes_check_config(tmp_path: Path) -> None:
    """docs/metrics.md's per-family example is accepted as shown, and keeps what the shipped rules read."""
    (config,) = [b for b in _blocks(REPO / "docs" / "metrics.md", "yaml") if "histograms:" in b]
    path = tmp_path / "histograms.yml"
    path.write_text(config)
    out = _cli("check-config", str(path))
    assert "OK, 0 target(s)" in out and "histograms: lean+custom" in out and "warning" not in out


# The README spells counts out.
NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)


def test_readme_counts_and_names_every_dashboard_and_alert() -> None:
    """README said "Seven Grafana dashboards" when there were nine, and listed twelve of sixteen alerts (now eighteen)."""
    text = README.read_text()
    boards = [json.loads(p.read_text())["title"] for p in sorted((REPO / JSON_DIR).glob("*.json"))]
    assert f"{NUMBERS.split()[len(boards)].capitalize()} Grafana dashboards" in text
    for title in boards:
        short = title.removeprefix("libp2p / ").removeprefix("libp2p ")
        assert f"*{short[0].upper()}{short[1:]}*" in text, title
    alerts = [
        r["alert"]
        for f in sorted((REPO / RULES_DIR).glob("*.yml"))
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert f"{NUMBERS.split()[len(alerts)].capitalize()} alert rules" in text
    missing = [a for a in alerts if f"`{a}`" not in text]
    assert not missing, missing


def test_readme_says_which_implementations_serve_the_protocol() -> None:
    text = README.read_text()
    assert "py-libp2p" in text and "exporter/introspector/" in text
    assert "go-libp2p" in text and "`producers/go`" in text and "docs/go-producer.md" in text


def test_python_commands_in_the_docs_run_from_the_venv() -> None:
    """`python -m dashboards …` fails outside the venv (the SDK is in .venv): the docs say .venv/bin/python."""
    bare = re.compile(r"(?<![\w/.])python3? -m (?!exporter)")
    offenders = []
    for path in [README, REPO / "deploy" / "README.md", *DOCS]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if bare.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
