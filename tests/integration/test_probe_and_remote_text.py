"""Issue 13, defects 4 and 5: /probe is governed (off by default, an allow-list, no credentials, no
chains, never itself, probed nodes never on /metrics), and remote text reaches logs and labels
only escaped, capped and without credentials."""

from __future__ import annotations

import logging
import urllib.parse

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.app.probe import ProbePolicy, probe_handler
from exporter.app.runtime import build_hub
from exporter.model.text import clean_label, redact_url, safe_text
from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.server import build_app
from exporter.sources.manager import SessionManager
from exporter.sources.options import SessionOptions, default_name
from exporter.sources.websocket import Session
from tests.support.introspect_server import IntrospectServer
from tests.support.procs import free_port, until
from tests.support.reference import HubCollector, render

FAST = SessionOptions(interval_ms=100, backoff_initial_s=0.05, backoff_max_s=0.2, heartbeat_s=None)


def client_for(hub: Hub, manager: SessionManager, policy: ProbePolicy) -> TestClient:
    app = build_app(hub, "/metrics", extra_routes=[("GET", "/probe", probe_handler(hub, manager, policy))])
    return TestClient(TestServer(app))


def q(target: str) -> str:
    return "/probe?target=" + urllib.parse.quote(target, safe="")


async def test_probe_is_off_by_default() -> None:
    hub = build_hub(live=True)
    manager = SessionManager(hub, FAST)
    async with client_for(hub, manager, ProbePolicy()) as client:
        resp = await client.get(q("ws://169.254.169.254/introspect"))
        assert resp.status == 404 and "--probe.enable" in await resp.text()
    assert not manager.sessions
    await manager.close()


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("ws://user:secret@127.0.0.1:5001/introspect", "credentials"),
        ("ws://127.0.0.1:9797/probe?target=ws://10.0.0.1:1/introspect", "chained"),
        ("ws://127.0.0.1:9797/introspect", "this exporter"),
        ("ws://localhost:9797/introspect", "this exporter"),
        ("ws://[::1]:9797/introspect", "this exporter"),
        ("ws://169.254.169.254/latest", "no --probe.allow"),
        ("ws://evil.example:5001/x\nFAKE LOG LINE", "control"),
        ("http://127.0.0.1:5001/introspect", "ws://"),
    ],
)
async def test_probe_refuses(target: str, why: str) -> None:
    hub = build_hub(live=True)
    manager = SessionManager(hub, FAST)
    policy = ProbePolicy(enabled=True, allow=[r"ws://(127\.0\.0\.1|localhost|\[::1\]|evil\.example):\d+/.*"],
                         listen="127.0.0.1:9797")  # fmt: skip
    async with client_for(hub, manager, policy) as client:
        resp = await client.get(q(target))
        text = await resp.text()
        assert resp.status == 400 and why in text, text
        assert "secret" not in text and "\n" not in text.rstrip("\n")
    assert not manager.sessions
    await manager.close()


async def test_probed_nodes_are_never_on_metrics(server: IntrospectServer) -> None:
    server.add("", connections=3)
    hub = build_hub(live=True)
    manager = SessionManager(hub, FAST)
    policy = ProbePolicy(enabled=True, allow=[r"ws://127\.0\.0\.1:\d+/.*"])
    try:
        async with client_for(hub, manager, policy) as client:
            resp = await client.get(q(server.url()))
            assert resp.status == 200
            body = await resp.text()
            assert 'libp2p_exporter_up{node="127.0.0.1:' in body
            metrics = await (await client.get("/metrics")).text()
            assert "libp2p_exporter_up{" not in metrics and "libp2p_connections{" not in metrics
    finally:
        await manager.close()


def test_runtime_strings_are_capped_and_sanitised() -> None:
    hub = build_hub()
    msg = pb.ServerMessage()
    msg.runtime.implementation = "evil\x00impl\u2028" + "x" * 100_000
    msg.runtime.version = "1.0\nforged_metric 1"
    msg.runtime.platform = "linux"
    msg.runtime.peer_id = "QmPeer"
    hub.ingest("n", msg)
    st = pb.ServerMessage()
    st.state.instant_ts = 1000
    hub.ingest("n", st)
    body, _ = render(HubCollector(hub))
    (info,) = [
        s for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == "libp2p_node_info"
    ]
    for key in ("implementation", "version", "platform"):
        value = info.labels[key]
        assert len(value) <= 128 and value.isprintable(), (key, value[:40])
    assert info.labels["implementation"].startswith("evil?impl?")


async def test_url_credentials_never_logged_nor_a_label(caplog: pytest.LogCaptureFixture) -> None:
    url = f"ws://alice:hunter2@127.0.0.1:{free_port()}/introspect"
    assert "hunter2" not in default_name(url)
    hub = build_hub(live=True)
    session = Session(hub, default_name(url), url, FAST)
    caplog.set_level(logging.DEBUG)
    session.start()
    try:
        await until(lambda: session.stats.failures["connect"] >= 2, 10.0, "two failed attempts")
    finally:
        await session.close()
    assert "127.0.0.1" in caplog.text and "hunter2" not in caplog.text and "alice" not in caplog.text
    body, _ = render(HubCollector(hub))
    assert b"hunter2" not in body


def test_remote_text_helpers() -> None:
    assert safe_text("a\nb\x00c\u2028") == "a\\nb\\x00c\\u2028"
    assert len(safe_text("x" * 1000)) <= 201
    assert clean_label("a\x00b\u2028c\n") == "a?b?c?"
    assert redact_url("wss://u:p@host:1/x") == "wss://***@host:1/x"
