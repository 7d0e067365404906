"""The HTTP side always answers: served from its own thread and loop, /healthz, /metrics and a
/probe of a watched node answer while the main loop is held (an exporter far behind on ingest)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request

from aiohttp import web

from exporter.app.runtime import build_hub
from exporter.server import HttpThread, build_app, on_home_loop
from tests.support.procs import free_port


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=20) as resp:
        return resp.status, resp.read()


async def test_health_and_metrics_answer_while_the_main_loop_is_held() -> None:
    hub = build_hub(live=True)
    hub.node("n")
    touched: list[str] = []

    async def home_only(_: web.Request) -> web.Response:  # touches the main loop's objects
        touched.append(threading.current_thread().name)
        return web.Response(text="home\n")

    app = build_app(hub, extra_routes=[("GET", "/home", on_home_loop(home_only))])
    port = free_port()
    http = HttpThread(app, f"127.0.0.1:{port}")
    await http.start()
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, tuple[int, bool]] = {}
    released = threading.Event()

    def client() -> None:
        for path in ("/healthz", "/metrics"):
            status, _ = _get(base + path)
            answers[path] = (status, released.is_set())

    try:
        thread = threading.Thread(target=client)
        thread.start()
        # Hold the main loop (as a long ingest would) until the client has both answers, at most 20 s.
        deadline = time.monotonic() + 20
        while len(answers) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        released.set()
        thread.join(20)
        assert answers == {"/healthz": (200, False), "/metrics": (200, False)}, answers
        # A route that must run on the main loop still works, and ran there.
        status, body = await asyncio.get_running_loop().run_in_executor(None, _get, base + "/home")
        assert (status, body) == (200, b"home\n") and touched == [threading.current_thread().name]
    finally:
        await http.stop()
    assert not any(t.name == "http" and t.is_alive() for t in threading.enumerate())


async def test_a_bad_listen_address_fails_start() -> None:
    port = free_port()
    first = HttpThread(build_app(build_hub()), f"127.0.0.1:{port}")
    await first.start()
    try:
        second = HttpThread(build_app(build_hub()), f"127.0.0.1:{port}")
        try:
            await second.start()
        except OSError:
            pass
        else:
            raise AssertionError("a second listener on a taken port started")
    finally:
        await first.stop()
