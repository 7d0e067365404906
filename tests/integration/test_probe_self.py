"""Issue 25, item 1: ``/probe`` never reaches the exporter itself, whatever the spelling.

A real exporter process with ``--probe.enable`` and no allow-list, listening on 127.0.0.1. Each
spelling the issue found accepted (200) must be refused with 400; a percent-encoded chain too; a node
that redirects the WebSocket handshake to the exporter's own ``/metrics`` is stopped at the socket
(the dial-time check), and other loopback targets stay allowed.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Proc, free_port, http_status, start_exporter, wait_for


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_exporter(["--probe.enable", "--interval", "300ms"], tmp_path_factory.mktemp("self-probe"))
    try:
        yield proc
    finally:
        proc.stop()


def probe(exp: Proc, target: str) -> tuple[int, str]:
    return http_status(f"{exp.url}/probe?target=" + urllib.parse.quote(target, safe=""), timeout=15.0)


SPELLINGS = [
    "ws://[::ffff:127.0.0.1]:{port}/metrics",
    "ws://[::ffff:7f00:1]:{port}/metrics",
    "ws://0x7f000001:{port}/metrics",
    "ws://2130706433:{port}/metrics",
    "ws://017700000001:{port}/metrics",
    "ws://127.1:{port}/metrics",
    "ws://0177.1:{port}/metrics",
    "ws://LOCALHOST:{port}/metrics",
    "ws://localhost:{port}/metrics",
    "ws://0.0.0.0:{port}/metrics",
    "ws://[::]:{port}/metrics",
    "ws://[::1]:{port}/metrics",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_exporter_itself_is_refused_under_every_spelling(exporter: Proc, spelling: str) -> None:
    status, text = probe(exporter, spelling.format(port=exporter.port))
    assert status == 400 and "this exporter" in text, (status, text[:300])


def test_this_hosts_name_is_refused(exporter: Proc) -> None:
    name = socket.gethostname()
    addrs = {info[4][0] for info in socket.getaddrinfo(name, exporter.port, type=socket.SOCK_STREAM)}
    if not any(a.startswith("127.") or a == "::1" for a in addrs):
        pytest.skip(f"this host's name {name!r} resolves to {addrs}, not the exporter's 127.0.0.1 listener")
    status, text = probe(exporter, f"ws://{name}:{exporter.port}/metrics")
    assert status == 400 and "this exporter" in text, (status, text[:300])


def test_a_percent_encoded_chain_is_refused(exporter: Proc) -> None:
    inner = urllib.parse.quote(f"ws://127.0.0.1:{free_port()}/introspect", safe="")
    for host in (f"[::ffff:127.0.0.1]:{exporter.port}", f"127.0.0.1:{free_port()}"):
        status, text = probe(exporter, f"ws://{host}/%70robe?%74arget={inner}")
        assert status == 400 and ("chained" in text or "this exporter" in text), (status, text[:300])
    # Encoded twice over: still a chain.
    status, text = probe(exporter, f"ws://127.0.0.1:{free_port()}/%2570robe?x=1")
    assert status == 400 and "chained" in text, (status, text[:300])


class _Redirector(BaseHTTPRequestHandler):
    location = ""
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def test_a_redirect_to_the_exporter_is_stopped_at_the_socket(exporter: Proc, tmp_path: Path) -> None:
    """The URL passes every check (another port), but the handshake is redirected to the exporter's
    own /metrics: the connector refuses the socket, on every reconnect."""
    _Redirector.location = f"http://127.0.0.1:{exporter.port}/metrics"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = f"ws://127.0.0.1:{server.server_address[1]}/introspect"
        status, _ = probe(exporter, target)
        assert status == 200  # another loopback port: allowed
        wait_for(lambda: "own listen address; refused" in exporter.output() or None, 20.0, "a refused redirect")
        wait_for(lambda: _Redirector.hits >= 3 or None, 20.0, "reconnects (each one redirected and refused)")
        assert "Invalid response status" not in exporter.output()  # /metrics never answered a handshake
    finally:
        server.shutdown()
        server.server_close()
