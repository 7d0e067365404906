"""Sharding (issue 12): a target's shard is a stable hash of its name, known to every replica alone;
growing the shard count moves few targets, all to the new shard; the shard may be a pod name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.app.config import ConfigError, build, check_file
from exporter.app.discovery import target_groups
from exporter.sources.options import Target
from exporter.sources.sharding import Shard, jump_hash, parse_shard

NAMES = [f"node-{i}" for i in range(4000)]


def test_jump_hash_matches_the_published_algorithm() -> None:
    # Values from the paper's C++ function compiled on its own (gcc), not from this code.
    assert jump_hash(0, 1) == 0
    assert [jump_hash(1, n) for n in (1, 2, 3, 10, 100)] == [0, 0, 0, 6, 55]
    assert jump_hash(0xDEADBEEF, 1000) == 285
    assert (jump_hash(0x0123456789ABCDEF, 7), jump_hash(0x0123456789ABCDEF, 12345)) == (0, 1504)


def test_shards_are_stable_and_balanced() -> None:
    four = [Shard(0, 4).of(n) for n in NAMES]
    assert four == [Shard(3, 4).of(n) for n in NAMES], "every replica must compute the same owner"
    counts = [four.count(i) for i in range(4)]
    assert min(counts) > 0.9 * len(NAMES) / 4, counts
    assert Shard(0, 1).select([Target(url="ws://a:1/introspect", name=n) for n in NAMES[:5]])[-1].name == "node-4"


@pytest.mark.parametrize("total", [1, 2, 3, 7])
def test_growing_by_one_moves_only_targets_to_the_new_shard(total: int) -> None:
    before = [Shard(0, total).of(n) for n in NAMES]
    after = [Shard(0, total + 1).of(n) for n in NAMES]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if a != b]
    assert all(a == total for _, a in moved), "a target may only move to the new shard"
    share = len(moved) / len(NAMES)
    assert abs(share - 1 / (total + 1)) < 0.05, share  # about 1/(N+1), not a reshuffle


def test_shard_from_a_number_or_a_pod_name() -> None:
    assert parse_shard(3) == 3
    assert parse_shard("2") == 2
    assert parse_shard("libp2p-exporter-11") == 11
    for bad in ("libp2p-exporter", "-1", True, "x-y"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    with pytest.raises(ValueError, match="out of range"):
        Shard(2, 2)
    with pytest.raises(ValueError, match="at least 1"):
        Shard(0, 0)


def test_sharding_from_file_env_and_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "sharding: {shard: libp2p-exporter-1, total_shards: 3}\nmetrics: {nodes: none}\n"
        "targets:\n" + "".join(f"  - {{name: n{i}, url: 'ws://h{i}:1/introspect'}}\n" for i in range(30))
    )
    live = build({}, [], str(cfg), env={})
    assert live.shard == Shard(1, 3) and live.metrics_nodes == "none"
    assert [t.name for t in live.owned_targets] == [t.name for t in live.targets if Shard(0, 3).of(t.name) == 1]
    env = {"LIBP2P_EXPORTER_SHARD": "0", "LIBP2P_EXPORTER_TOTAL_SHARDS": "2"}
    assert build({}, [], str(cfg), env=env).shard == Shard(0, 2)
    assert build({"shard": 1}, [], str(cfg), env=env).shard == Shard(1, 2)
    ok, text = check_file(str(cfg))
    assert ok and "shard 1 of 3 watches" in text and "(shard 2)" in text


def test_sharding_mistakes_are_one_line_each(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("sharding:\n  shard: 4\n  total_shards: 2\nmetrics:\n  nodes: some\n")
    with pytest.raises(ConfigError) as err:
        build({}, [], str(cfg), env={})
    assert err.value.problems == [f"{cfg}:5: metrics.nodes: one of all, none"]
    cfg.write_text("sharding:\n  shard: 4\n  total_shards: 2\n")
    with pytest.raises(ConfigError) as err:
        build({}, [], str(cfg), env={})
    assert err.value.problems == ["sharding: shard 4 is out of range for 2 total shard(s) (0-1)"]
    cfg.write_text("sharding:\n  total_shards: 0\n")
    with pytest.raises(ConfigError) as err:
        build({}, [], str(cfg), env={})
    assert err.value.problems == [f"{cfg}:2: sharding.total_shards: must be positive"]


def test_discovery_groups_are_http_sd_and_never_shadow_the_series_labels() -> None:
    targets = [
        Target(url="ws://user:secret@10.0.0.2:8080/introspect", name="b", labels={"region": "eu"}),
        Target(url="ws://10.0.0.1:8080/introspect", name="a"),
    ]
    groups = json.loads(json.dumps(target_groups(targets, "replica-0:9797", "https", Shard(0, 2))))
    assert [g["labels"]["__meta_libp2p_node"] for g in groups] == ["a", "b"]
    a, b = groups
    assert a == {
        "targets": ["replica-0:9797"],
        "labels": {
            "__scheme__": "https",
            "__metrics_path__": "/probe",
            "__param_target": "ws://10.0.0.1:8080/introspect",
            "instance": "ws://10.0.0.1:8080/introspect",
            "__meta_libp2p_node": "a",
            "__meta_libp2p_shard": "0",
            "__meta_libp2p_total_shards": "2",
        },
    }
    # Credentials never leave the exporter; the node's own labels stay on its series (no exported_*).
    assert "secret" not in json.dumps(b)
    assert b["labels"]["__meta_libp2p_label_region"] == "eu"
    assert not {"node", "region"} & set(b["labels"])


def test_a_count_that_is_not_a_whole_number_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("sharding:\n  total_shards: two\nsession:\n  queue_size: 1.5\n")
    with pytest.raises(ConfigError) as err:
        build({}, [], str(cfg), env={})
    assert err.value.problems == [
        f"{cfg}:2: sharding.total_shards: expected a whole number, not 'two'",
        f"{cfg}:4: session.queue_size: expected a whole number, not 1.5",
    ]
    with pytest.raises(ConfigError) as err:
        build({}, [], None, env={"LIBP2P_EXPORTER_TOTAL_SHARDS": "x"})
    assert err.value.problems == ["$LIBP2P_EXPORTER_TOTAL_SHARDS: expected a whole number, not 'x'"]


async def test_discovery_lists_the_configured_targets_until_the_manager_has_started_them() -> None:
    """HTTP answers before the sessions are added: a scrape of /discovery in between must get the
    configured targets, not ``[]`` (which made Prometheus drop every node of a starting replica)."""
    import asyncio
    import contextlib

    from exporter.app.runtime import build_hub
    from exporter.sources.manager import SessionManager

    # Port 9 (discard) on loopback: the sessions only back off; what matters is the target list.
    configured = [Target(url=f"ws://127.0.0.1:9/n/{i}/introspect", name=f"n{i}") for i in range(3)]
    manager = SessionManager(build_hub())
    assert manager.current_targets(configured) == configured  # not started: the configuration's
    task = asyncio.create_task(manager.run(configured[:2]))
    try:
        for _ in range(100):
            if manager.started:
                break
            await asyncio.sleep(0)
        assert manager.started, "the manager never added its targets"
        assert sorted(t.name for t in manager.current_targets([])) == ["n0", "n1"]  # now its own
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
