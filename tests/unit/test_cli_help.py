"""Issue 13: the help text is grouped and worded the same in every serving command, and the default
command's flags are shown at the top level (flags given without a command are live's)."""

from __future__ import annotations

import argparse
import re

import pytest

from exporter.app.cli import build_parser
from exporter.app.live import FLEET_GROUP

SERVING = ("live", "replay", "demo")
OWN = {"options", "positional arguments"}  # each command's own flags; every other group is shared


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _sections(help_text: str) -> dict[str, str]:
    """{heading: its block} of one command's help, for the argument groups (``title:`` lines)."""
    out: dict[str, str] = {}
    for block in re.split(r"\n(?=\S[^\n]*:\n)", help_text):
        heading, _, body = block.partition("\n")
        if heading.endswith(":") and not heading.startswith("usage"):
            out[heading[:-1]] = body
    return out


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    parser = build_parser()
    commands = _commands(parser)
    return {"": parser.format_help(), **{name: commands[name].format_help() for name in SERVING}}


def test_the_shared_flags_are_in_the_same_groups_with_the_same_words(helps: dict[str, str]) -> None:
    shared = {name: {k: v for k, v in _sections(helps[name]).items() if k not in OWN} for name in SERVING}
    groups = {name: {k: v for k, v in g.items() if k != FLEET_GROUP} for name, g in shared.items()}
    assert FLEET_GROUP in shared["live"]  # live's own group: sharding, discovery and reload are live mode's
    assert set(groups["live"]) == {
        "serving (HTTP)",
        "logging",
        "limits (what one node may cost: label values, series, segment size)",
        "native histograms (exposed to scrapers that negotiate protobuf)",
        "tracing (OpenTelemetry, off unless an OTLP endpoint is set)",
        "pubsub traces (go-libp2p-pubsub event tracer; off unless a listen address or file)",
    }
    for name in SERVING[1:]:
        assert groups[name] == groups["live"], name  # every line of every shared group, in order


def test_no_shared_flag_is_left_among_a_command_s_own(helps: dict[str, str]) -> None:
    for name in SERVING:
        own = "".join(v for k, v in _sections(helps[name]).items() if k in OWN)
        assert not re.findall(r"^  (--(?:web|log|labels|histograms|protocol|otlp|tracing|pubsub)\.\S+)", own, re.M), (
            name
        )


def test_the_top_level_help_shows_the_default_command_s_flags(helps: dict[str, str]) -> None:
    top = helps[""]
    assert "live is the default command" in top
    assert top.endswith(helps["live"])
    for flag in ("--target", "--config", "--web.listen-address", "--labels.series-per-node", "--otlp.endpoint"):
        assert f"  {flag} " in top, flag
