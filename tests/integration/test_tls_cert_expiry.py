"""Issue 25, item 5: an expired or not-yet-valid TLS certificate is not served silently.

Warned at start and at each reload with its dates, warned ahead of expiry (14 days), and its expiry
exported as ``libp2p_exporter_tls_certificate_expiry_timestamp_seconds`` so an alert fires before it
lapses. Real certificates (``cryptography``), a real TLS listener and real handshakes; the last test
runs the exporter process and reads the metric over HTTPS.
"""

from __future__ import annotations

import datetime
import logging
import ssl
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from exporter.model.catalogue import Family, Labels, Writer
from exporter.web_auth import install
from exporter.web_config import WebConfigWatcher
from tests.support.procs import REPO, Proc, free_port, spawn, wait_for
from tests.support.tls import TLS, Material, make_material, write

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
METRIC = "libp2p_exporter_tls_certificate_expiry_timestamp_seconds"


def material(tmp: Path, valid: tuple[datetime.datetime, datetime.datetime]) -> Material:
    return make_material(tmp, server_valid=valid)


def iso(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "certificate" in r.getMessage()]


async def handshake(watcher: WebConfigWatcher, ca: Path) -> str:
    """Serve with the watcher's context on 127.0.0.1 and GET /metrics over a verifying TLS client:
    'ok' or the client's verification error."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="up 1\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    install(app, watcher)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=watcher.ssl_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        client = ssl.create_default_context(cafile=str(ca))
        async with aiohttp.ClientSession() as s:
            try:
                async with s.get(f"https://127.0.0.1:{port}/metrics", ssl=client) as resp:
                    return "ok" if resp.status == 200 else f"status {resp.status}"
            except aiohttp.ClientConnectorCertificateError as exc:
                return str(exc.certificate_error)
    finally:
        await runner.cleanup()


class Gauges(Writer):
    """A writer that keeps the gauges written to it: {(name, file label): value}."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], float] = {}

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        assert family.help and family.labels == ("file",)
        self.values[(family.name, (labels or {}).get("file", ""))] = value


def exported(watcher: WebConfigWatcher) -> dict[str, float]:
    out = Gauges()
    watcher.certificates.write_metrics(out)
    return {file: value for (name, file), value in out.values.items() if name == METRIC}


@pytest.mark.parametrize(
    ("valid", "said", "handshake_error"),
    [
        ((NOW - 10 * DAY, NOW - DAY), "has EXPIRED", "expired"),
        ((NOW + DAY, NOW + 10 * DAY), "is NOT YET VALID", "not yet valid"),
    ],
)
async def test_an_unusable_certificate_is_warned_at_start_with_its_dates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, valid: tuple[datetime.datetime, ...], said: str,
    handshake_error: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.WARNING)
    m = material(tmp_path, (valid[0], valid[1]))
    watcher = WebConfigWatcher(write(m, TLS))
    (line,) = warnings(caplog)
    assert "at start" in line and said in line and str(m.cert) in line, line
    assert f"valid from {iso(valid[0])} to {iso(valid[1])}" in line, line
    assert handshake_error in await handshake(watcher, m.ca)  # what the warning is about: clients refuse it
    assert exported(watcher) == {str(m.cert): valid[1].timestamp()}


async def test_a_certificate_expiring_within_14_days_is_warned_ahead(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    m = material(tmp_path, (NOW - DAY, NOW + 3 * DAY))
    watcher = WebConfigWatcher(write(m, TLS))
    (line,) = warnings(caplog)
    assert "expires in 3.0 days" in line and iso(NOW + 3 * DAY) in line, line
    assert await handshake(watcher, m.ca) == "ok"  # still served


async def test_a_reload_to_an_expired_certificate_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    good = material(tmp_path / "good", (NOW - DAY, NOW + 90 * DAY))
    watcher = WebConfigWatcher(write(good, TLS))
    assert not warnings(caplog)
    assert await handshake(watcher, good.ca) == "ok"
    expired = material(tmp_path / "expired", (NOW - 30 * DAY, NOW - 2 * DAY))
    for name in ("server.pem", "server.key", "ca.pem"):
        (good.ca.parent / name).write_bytes((expired.ca.parent / name).read_bytes())
    assert "expired" in await handshake(watcher, good.ca)  # the handshake reloads the files
    (line,) = warnings(caplog)
    assert "after reload" in line and "has EXPIRED" in line and iso(NOW - 2 * DAY) in line, line
    assert exported(watcher)[str(good.cert)] == (NOW - 2 * DAY).timestamp()


def test_the_exporter_exports_the_expiry_over_https(tmp_path: Path) -> None:
    not_after = NOW + 40 * DAY
    m = material(tmp_path / "tls", (NOW - DAY, not_after))
    web_yml = write(m, TLS)
    port = free_port()
    cmd = [sys.executable, "-m", "exporter", "--interval", "300ms", "--probe.enable"]
    cmd += ["--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(web_yml)]
    proc: Proc = spawn(cmd, tmp_path / "exp", "exporter", port, {"PYTHONPATH": str(REPO)})
    client = ssl.create_default_context(cafile=str(m.ca))
    try:

        def scrape() -> str | None:
            if proc.proc.poll() is not None:
                raise AssertionError(f"exporter exited {proc.proc.returncode}:\n{proc.output()}")
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=client, timeout=5) as resp:
                return str(resp.read().decode())

        body = wait_for(scrape, 20.0, "the exporter to answer over TLS")
        line = f'{METRIC}{{file="{m.cert}"}} {not_after.timestamp():.10g}'
        assert any(
            ln.startswith(f'{METRIC}{{file="{m.cert}"}} ') and float(ln.split()[-1]) == not_after.timestamp()
            for ln in body.splitlines()
        ), (line, [ln for ln in body.splitlines() if "tls" in ln])
        assert "certificate" not in proc.output()  # 40 days left: nothing to say
    finally:
        proc.stop()
