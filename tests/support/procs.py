"""Real servers for end-to-end tests: the exporter as a subprocess, Prometheus, Alertmanager.

Everything binds 127.0.0.1 on a free port, keeps its data in a temporary directory, and is
stopped by the fixture that started it. Waits are bounded polls that fail loudly on timeout
(``wait_for``; ``until`` in async tests), never bare sleeps.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"  # third-party test data kept in the repository (see its README)
FIXTURE = FIXTURES / "observer-toolkit" / "sample-1min.mock"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


async def until(
    check: Callable[[], T | Awaitable[T] | None], timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> T:
    """``wait_for`` for async tests: poll without blocking the event loop the servers run on.

    ``check`` may be a coroutine function (awaited on each poll). Fails loudly on timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> str:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode()


def http_status(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET, an HTTP error's included (``http_get`` raises on those)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed: run `make system-deps` (Debian package)")
    return path


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


def spawn(cmd: list[str], workdir: Path, name: str, port: int, env: dict[str, str] | None = None) -> Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    fh = open(log, "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir, env={**os.environ, **(env or {})})
    return Proc(proc, port, log, workdir)


def start_exporter(
    args: list[str],
    workdir: Path,
    env: dict[str, str] | None = None,
    ready_path: str = "/healthz",
    module: str = "exporter",
) -> Proc:
    """``python -m MODULE ARGS --web.listen-address 127.0.0.1:PORT``, once it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", module, *args, "--web.listen-address", f"127.0.0.1:{port}"]
    proc = spawn(cmd, workdir, "exporter", port, {"PYTHONPATH": str(REPO), **(env or {})})

    def ready() -> bool:
        if proc.proc.poll() is not None:
            raise AssertionError(f"exporter exited {proc.proc.returncode}:\n{proc.output()}")
        http_get(proc.url + ready_path, timeout=1.0)
        return True

    wait_for(ready, 20.0, "the exporter to answer")
    return proc


@dataclass
class Prometheus(Proc):
    rule_files: list[str] = field(default_factory=list)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        body = json.loads(http_get(url))
        if body.get("status") != "success":
            raise AssertionError(f"prometheus {path} failed: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it returns nothing."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"{expr} returned {len(result)} series")
        return float(result[0]["value"][1])

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


def start_prometheus(
    workdir: Path,
    scrape_configs: Iterable[dict[str, Any]],
    *,
    rule_files: Iterable[Path] = (),
    alertmanager_url: str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    storage: Path | None = None,
    retention: str = "1h",
    features: Iterable[str] = (),
) -> Prometheus:
    """A real Prometheus (Debian's package) with its own config and storage, on a free port.

    ``storage``: serve an existing TSDB directory (backfilled blocks) instead of a fresh one.
    ``features``: ``--enable-feature`` values (``native-histograms``, ``exemplar-storage``).
    """
    binary = require("prometheus")
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "scrape_configs": list(scrape_configs),
    }
    rules = [str(p) for p in rule_files]
    if rules:
        config["rule_files"] = rules
    if alertmanager_url:
        host = urllib.parse.urlparse(alertmanager_url).netloc
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [
        binary,
        f"--config.file={cfg}",
        f"--storage.tsdb.path={storage or workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.retention.time={retention}",
        "--log.level=warn",
        *(f"--enable-feature={feature}" for feature in features),
    ]
    base = spawn(cmd, workdir, "prometheus", port)
    prom = Prometheus(base.proc, base.port, base.log, base.workdir, rules)

    def ready() -> bool:
        if prom.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {prom.proc.returncode}:\n{prom.output()}")
        http_get(prom.url + "/-/ready", timeout=1.0)
        return True

    wait_for(ready, 30.0, "prometheus to be ready")
    return prom


def scrape_job(name: str, target_port: int, metrics_path: str = "/metrics", **extra: Any) -> dict[str, Any]:
    return {
        "job_name": name,
        "metrics_path": metrics_path,
        "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
        **extra,
    }


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    """``kustomize build DIRECTORY``: the pinned build `make go-deps` puts in .gobin, else one on PATH."""
    pinned = REPO / ".gobin" / "kustomize"
    binary = str(pinned) if pinned.exists() else shutil.which("kustomize")
    if binary is None:
        raise RuntimeError("kustomize is not installed: run `make go-deps` (pinned, into .gobin)")
    return subprocess.run([binary, "build", str(directory)], capture_output=True, text=True, timeout=120)


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=120)


def wait_url(url: str, timeout: float = 20.0) -> None:
    def ok() -> bool:
        try:
            http_get(url, timeout=1.0)
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    wait_for(ok, timeout, url)


def start_alertmanager(workdir: Path, webhook_url: str, *, route: dict[str, Any] | None = None) -> Proc:
    """A real Alertmanager (Debian's package) sending every alert to one webhook, gossip port closed."""
    binary = shutil.which("prometheus-alertmanager") or require("alertmanager")
    port = free_port()
    config = {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "node"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            **(route or {}),
        },
        "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [
        binary,
        f"--config.file={cfg}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    am = spawn(cmd, workdir, "alertmanager", port)

    def ready() -> bool:
        if am.proc.poll() is not None:
            raise AssertionError(f"alertmanager exited {am.proc.returncode}:\n{am.output()}")
        http_get(am.url + "/-/ready", timeout=1.0)
        return True

    wait_for(ready, 30.0, "alertmanager to be ready")
    return am


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it (Alertmanager's webhook)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._lock:
                    outer.payloads.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.payloads)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
