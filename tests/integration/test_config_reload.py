"""Live reload (issue 12): a new config applies without a restart; unchanged targets keep their
session and counters, removed ones lose their series, changed ones restart; a broken file is refused
with check-config's lines, the running config stays, and the reload gauge says so."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.app.config import build
from exporter.app.reload import LiveState, reload_handler
from exporter.app.runtime import build_hub
from exporter.server import build_app
from exporter.sources.manager import SessionManager
from exporter.sources.options import SessionOptions, Target
from tests.support.introspect_server import IntrospectServer
from tests.support.procs import until

FAST = SessionOptions(interval_ms=100, backoff_initial_s=0.05, backoff_max_s=0.2, heartbeat_s=None)


def _write(path: Path, srv: IntrospectServer, targets: dict[str, str]) -> None:
    path.write_text(
        "targets:\n" + "".join(f"  - {{name: {n}, url: '{srv.url(n)}'{extra}}}\n" for n, extra in targets.items())
    )


async def test_reload_applies_the_difference_and_refuses_a_broken_file(tmp_path: Path) -> None:
    srv = IntrospectServer()
    for name in ("a", "b", "c", "d"):
        srv.add(name, seed=ord(name), connections=2)
    await srv.start()
    cfg_file = tmp_path / "live.yml"
    _write(cfg_file, srv, {"a": "", "b": "", "c": ""})
    hub = build_hub(live=True)
    manager = SessionManager(hub, FAST)
    rebuild = lambda: build({}, [], str(cfg_file), env={})  # noqa: E731 - as live mode rebuilds it
    cfg = rebuild()
    state = LiveState(cfg, manager, rebuild)
    hub.add_global_writer(state.write_metrics)
    for t in cfg.owned_targets:
        manager.add(t)
    app = build_app(hub, "/metrics", extra_routes=[("POST", "/-/reload", reload_handler(state, True))])
    closed = build_app(hub, "/metrics", extra_routes=[("POST", "/-/reload", reload_handler(state, False))])
    try:
        await until(lambda: all(hub.nodes[n].messages.get("state", 0) >= 3 for n in "abc"), 10.0, "three nodes' States")
        a_session, b_session = manager.sessions["a"], manager.sessions["b"]
        a_states = hub.nodes["a"].messages["state"]

        # a unchanged, b's interval changes (restart), c leaves, d joins.
        _write(cfg_file, srv, {"a": "", "b": ", interval: 200ms", "d": ""})
        async with TestClient(TestServer(closed)) as client:
            resp = await client.post("/-/reload")
            assert resp.status == 403 and "--web.enable-lifecycle" in await resp.text()
        assert set(manager.sessions) == {"a", "b", "c"}, "a refused POST must not reload"
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/-/reload")
            text = await resp.text()
            assert resp.status == 200, text
            assert "1 added, 1 removed, 1 restarted" in text
            assert set(manager.sessions) == {"a", "b", "d"}
            assert manager.sessions["a"] is a_session, "an unchanged target keeps its session"
            assert manager.sessions["b"] is not b_session and manager.sessions["b"].opts.interval_ms == 200
            assert "c" not in hub.nodes, "a removed target's series go with it"
            assert hub.nodes["a"].messages["state"] >= a_states, "and an unchanged one keeps its counters"
            body = await (await client.get("/metrics")).text()
            assert 'node="c"' not in body
            assert "libp2p_exporter_config_last_reload_successful 1.0" in body

            # A broken file: refused with the file's line, nothing changes, the gauge says 0.
            cfg_file.write_text("targets:\n  - {name: a, url: 'http://nope'}\n")
            resp = await client.post("/-/reload")
            assert resp.status == 500
            assert (await resp.text()).startswith(f"{cfg_file}:2: targets[0].url: ")
            assert set(manager.sessions) == {"a", "b", "d"} and manager.sessions["a"] is a_session
            body = await (await client.get("/metrics")).text()
            assert "libp2p_exporter_config_last_reload_successful 0.0" in body
            await until(lambda: hub.nodes["d"].messages.get("state", 0) >= 1, 10.0, "the added node's first State")
    finally:
        await manager.close()
        await srv.stop()


async def test_a_session_closed_while_it_connects_ends() -> None:
    """A reload (or shutdown) that stops a target while its WebSocket is connecting must not hang:
    before Python 3.12, ``wait_for`` could swallow the cancel when the connect finished at that moment,
    and the session streamed on with ``close()`` waiting for it forever (the reload lock held)."""
    srv = IntrospectServer()
    srv.add("a", seed=1, connections=2)
    srv.add("b", seed=2, connections=2)
    await srv.start()
    try:
        for delay in [0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.013, 0.02, 0.05] * 2:
            manager = SessionManager(build_hub(live=True), FAST)
            for name in ("a", "b"):
                manager.add(Target(url=srv.url(name), name=name))
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(asyncio.shield(manager.close()), 10.0)
            except asyncio.TimeoutError:
                raise AssertionError(f"closing sessions {delay * 1000:.1f} ms after they started hung") from None
    finally:
        await srv.stop()


async def test_reload_applies_the_log_level_and_warns_only_of_what_it_cannot_apply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg_file = tmp_path / "live.yml"
    cfg_file.write_text("log:\n  level: info\n")
    manager = SessionManager(build_hub(live=True), FAST)
    rebuild = lambda: build({}, [], str(cfg_file), env={})  # noqa: E731
    state = LiveState(rebuild(), manager, rebuild)
    root = logging.getLogger()
    before = root.level
    try:
        cfg_file.write_text("log:\n  level: warn\ndefaults:\n  interval: 2s\n")
        with caplog.at_level(logging.INFO, logger="libp2p-exporter"):
            ok, _ = await state.reload("test")
        assert ok and root.level == logging.WARNING
        assert not [r for r in caplog.records if "only a restart" in r.getMessage()], "interval travels with targets"
        cfg_file.write_text("log:\n  level: warn\ndefaults:\n  stale_intervals: 5\n")
        with caplog.at_level(logging.WARNING, logger="libp2p-exporter"):
            ok, _ = await state.reload("test")
        assert ok and any("options changed; only a restart" in r.getMessage() for r in caplog.records)
    finally:
        root.setLevel(before)
        await manager.close()
