"""Typed settings: every default is stated once, in exporter/settings.py (issue 21, item 3).

Flags left out, an empty environment and no config file must give exactly the dataclasses' own
defaults, for every command that produces settings; a flag that is given reaches the typed value.
"""

from __future__ import annotations

import pytest

from exporter.app.cli import build_parser
from exporter.app.config import LiveConfig, build
from exporter.app.flags import limits_from_args, pubsub_files_from_args, settings_from_args
from exporter.app.live import _flags
from exporter.mappers.pubsub import PubsubMetrics
from exporter.model.labels import Cardinality
from exporter.settings import Limits, Pubsub, Settings, Tracing


@pytest.mark.parametrize("argv", [["replay", "x.mock"], ["demo"]])
def test_serving_flags_left_out_are_the_settings_defaults(argv: list[str]) -> None:
    assert settings_from_args(build_parser().parse_args(argv)) == Settings()


def test_live_mode_with_nothing_given_is_the_config_defaults() -> None:
    args = build_parser().parse_args(["live"])
    assert build(_flags(args), [], None, env={}) == LiveConfig()
    assert settings_from_args(args).limits == Limits() and settings_from_args(args).tracing == Tracing()


def test_backfill_shares_the_limit_flags_and_their_types() -> None:
    parser = build_parser()
    args = parser.parse_args(["backfill", "-o", "out"])
    assert limits_from_args(args) == Limits() and pubsub_files_from_args(args) == Pubsub()
    args = parser.parse_args(["backfill", "-o", "out", "--labels.series-per-node", "50", "--labels.protocol-cap", "3"])
    assert limits_from_args(args) == Limits(series_per_node=50, protocol_cap=3)
    with pytest.raises(SystemExit):  # a count, as for the serving commands (it was a bare int)
        parser.parse_args(["backfill", "-o", "out", "--labels.protocol-cap", "-1"])


def test_given_flags_reach_the_typed_settings() -> None:
    argv = ["replay", "x.mock", "--tracing.max-open-spans", "7", "--pubsub.topics", "a, b", "--pubsub.topic-cap", "2"]
    s = settings_from_args(build_parser().parse_args([*argv, "--web.listen-address", "127.0.0.1:1"]))
    assert s.tracing.max_open_spans == 7 and s.pubsub.topics == ("a", "b") and s.pubsub.topic_cap == 2
    assert s.serving.listen == "127.0.0.1:1"


def test_library_defaults_are_the_settings_defaults() -> None:
    card, limits = Cardinality(), Limits()
    assert (card.protocol.cap, card.security.cap, card.series_per_family) == (
        limits.protocol_cap,
        limits.other_cap,
        limits.series_per_family,
    )
    mapper, pubsub = PubsubMetrics(), Pubsub()
    assert mapper.max_messages == pubsub.max_messages
