"""--web.config.file served: TLS, auth, headers and limits hold on every path; Prometheus' checker agrees.

Servers are real aiohttp sites on 127.0.0.1 with real TLS (a throwaway CA made by tests.support.tls).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from exporter.web_auth import Guard, install
from exporter.web_config import WebConfigError, WebConfigWatcher, read
from tests.support.procs import promtool
from tests.support.tls import TLS, Material, hashed, make_material, write


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("tls"))


async def metrics(_: web.Request) -> web.Response:
    return web.Response(text="up 1\n")


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Path], object]]:
    runners: list[web.AppRunner] = []

    async def start(path: Path) -> tuple[str, Guard]:
        watcher = WebConfigWatcher(path)
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        guard = install(app, watcher)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ctx = watcher.ssl_context()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"{'https' if ctx else 'http'}://127.0.0.1:{port}", guard

    yield start
    for runner in runners:
        await runner.cleanup()


def client_ctx(material: Material, cert: bool = False, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(material.ca))
    if cert:
        ctx.load_cert_chain(material.client_cert, material.client_key)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


async def get(url: str, ctx: ssl.SSLContext | None, auth: tuple[str, str] | None = None) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": aiohttp.encode_basic_auth(*auth)} if auth else {}
        async with s.get(url, ssl=ctx if ctx else False, headers=headers) as resp:
            await resp.read()
            return resp


async def test_basic_auth_over_tls_on_every_path(material: Material, serve) -> None:  # type: ignore[no-untyped-def]
    url, guard = await serve(write(material, TLS + f"basic_auth_users:\n  alice: '{hashed()}'\n"))
    ctx = client_ctx(material)
    for path in ("/metrics", "/healthz", "/", "/nothing-here"):
        resp = await get(url + path, ctx)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"] == "Basic"
    assert (await get(url + "/metrics", ctx, ("alice", "wrong"))).status == 401
    assert (await get(url + "/metrics", ctx, ("mallory", "s3cret"))).status == 401
    assert (await get(url + "/metrics", ctx, ("alice", "s3cret"))).status == 200
    assert (await get(url + "/nothing-here", ctx, ("alice", "s3cret"))).status == 404
    for _ in range(3):
        assert (await get(url + "/metrics", ctx, ("alice", "s3cret"))).status == 200
    # alice wrong, mallory, alice right once: later scrapes with the right password hit the cache
    assert guard.passwords.bcrypt_runs == 3
    assert guard.denied["unauthorized"] == 6


async def test_client_certificate_required(material: Material, serve) -> None:  # type: ignore[no-untyped-def]
    body = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
    url, _ = await serve(write(material, body))
    with pytest.raises(aiohttp.ClientError):
        await get(url + "/healthz", client_ctx(material))
    assert (await get(url + "/healthz", client_ctx(material, cert=True))).status == 200


async def test_client_allowed_sans(material: Material, serve) -> None:  # type: ignore[no-untyped-def]
    body = (
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [{}]\n"
    )
    url, _ = await serve(write(material, body.format("other.example"), "a.yml"))
    assert (await get(url + "/metrics", client_ctx(material, cert=True))).status == 403
    url, _ = await serve(write(material, body.format("scraper.example"), "b.yml"))
    assert (await get(url + "/metrics", client_ctx(material, cert=True))).status == 200


async def test_min_version_and_cipher_suites(material: Material, serve) -> None:  # type: ignore[no-untyped-def]
    url, _ = await serve(write(material, TLS + "  min_version: TLS13\n", "a.yml"))
    with pytest.raises(aiohttp.ClientError):
        await get(url + "/metrics", client_ctx(material, max_version=ssl.TLSVersion.TLSv1_2))
    assert (await get(url + "/metrics", client_ctx(material))).status == 200
    suite = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"  # the test key is ECDSA
    url, _ = await serve(write(material, TLS + f"  max_version: TLS12\n  cipher_suites: [{suite}]\n", "b.yml"))
    port = int(url.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx(material))
    ssl_object = writer.get_extra_info("ssl_object")
    assert ssl_object.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert ssl_object.version() == "TLSv1.2"
    writer.close()


async def test_headers_on_every_response(material: Material, serve) -> None:  # type: ignore[no-untyped-def]
    body = (
        f"basic_auth_users:\n  alice: '{hashed()}'\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: \"default-src 'self'\"\n"
    )
    url, _ = await serve(write(material, body))
    for resp in (await get(url + "/metrics", None), await get(url + "/x", None, ("alice", "s3cret"))):
        assert resp.status in (401, 404)
        assert resp.headers["X-Frame-Options"] == "deny"
        assert resp.headers["Content-Security-Policy"] == "default-src 'self'"


async def test_rate_limit(material: Material, serve) -> None:  # type: ignore[no-untyped-def]
    url, guard = await serve(write(material, "rate_limit:\n  interval: 1h\n  burst: 2\n"))
    statuses = [(await get(url + "/healthz", None)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert guard.denied["rate_limited"] == 1


async def test_the_file_is_followed_on_each_request(material: Material, serve) -> None:  # type: ignore[no-untyped-def]
    path = write(material, TLS + f"basic_auth_users:\n  alice: '{hashed()}'\n")
    url, guard = await serve(path)
    ctx = client_ctx(material)
    assert (await get(url + "/metrics", ctx, ("alice", "s3cret"))).status == 200
    path.write_text(TLS + f"basic_auth_users:\n  alice: '{hashed(b'rotated')}'\n")
    assert (await get(url + "/metrics", ctx, ("alice", "s3cret"))).status == 401
    assert (await get(url + "/metrics", ctx, ("alice", "rotated"))).status == 200
    path.write_text(TLS + "basic_auth_users: [\n")  # broken while serving: handshakes fail, as in the toolkit
    with pytest.raises(aiohttp.ClientError):
        await get(url + "/metrics", ctx, ("alice", "rotated"))
    assert guard.watcher.refused_handshakes == 1
    path.write_text(TLS)  # fixed, and auth removed
    assert (await get(url + "/metrics", ctx)).status == 200
    assert guard.watcher.reloads == 2
    # Tightening client auth applies to the next handshake without a restart.
    path.write_text(TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n")
    with pytest.raises(aiohttp.ClientError):
        await get(url + "/metrics", ctx)
    with pytest.raises(aiohttp.ClientError):
        await get(url + "/metrics", ctx)
    assert (await get(url + "/metrics", client_ctx(material, cert=True))).status == 200


async def test_a_file_broken_while_serving_plain_http_answers_500(material: Material, serve, caplog) -> None:  # type: ignore[no-untyped-def]
    path = write(material, f"basic_auth_users:\n  alice: '{hashed()}'\n")
    url, guard = await serve(path)
    path.write_text("basic_auth_users:\n  alice: plain\n")
    for _ in range(3):
        assert (await get(url + "/metrics", None, ("alice", "s3cret"))).status == 500
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "basic_auth_users.alice: not a bcrypt hash" in errors[0]  # once, not per request
    path.write_text(f"basic_auth_users:\n  alice: '{hashed()}'\n")
    assert (await get(url + "/metrics", None, ("alice", "s3cret"))).status == 200
    assert guard.denied["config_error"] == 3


# Files Prometheus' own checker (promtool check web-config, the exporter-toolkit's parser) refuses too,
# files both accept, and files only Python's ssl forces us to refuse (docs/web-config.md lists them).
AGREE = [
    (TLS, True),
    (TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n", True),
    (TLS + "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  max_version: TLS12\n", True),
    ("http_server_config:\n  headers:\n    X-Frame-Options: deny\n", True),
    ("tls_server_config: [\n", False),
    ("tls_sever_config: {}\n", False),
    (TLS + "  cert_fil: x\n", False),
    ("tls_server_config:\n  cert_file: server.pem\n", False),
    (TLS + "  min_version: TLS14\n", False),
    (TLS + "  client_auth_type: Sometimes\n", False),
    (TLS + "  client_ca_file: ca.pem\n", False),
    (TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", False),
    (TLS.replace("server.pem", "nope.pem"), False),
    (TLS.replace("server.key", "client.key"), False),
    ("basic_auth_users:\n  alice: plaintext\n", False),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", False),
]
PYTHON_ONLY = [
    TLS + "  client_auth_type: RequireAnyClientCert\n",
    TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
    TLS + "  curve_preferences: [X25519]\n",
]


@pytest.mark.parametrize(("body", "valid"), AGREE)
def test_prometheus_own_checker_agrees(material: Material, body: str, valid: bool) -> None:
    path = write(material, body, "agree.yml")
    checked = promtool("check", "web-config", str(path))
    assert (checked.returncode == 0) == valid, checked.stdout + checked.stderr
    if valid:
        read(path)
    else:
        with pytest.raises(WebConfigError):
            read(path)


@pytest.mark.parametrize("body", PYTHON_ONLY)
def test_what_only_python_refuses_is_valid_for_the_toolkit(material: Material, body: str) -> None:
    path = write(material, body, "python-only.yml")
    checked = promtool("check", "web-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with pytest.raises(WebConfigError, match=r"not supported|cannot be chosen"):
        read(path)
