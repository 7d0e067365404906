"""--web.config.file parsing: every problem is one line naming file and key; credentials; the password cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.web_auth import PasswordCache, basic_credentials
from exporter.web_config import WebConfigError, parse, parse_go_duration, read
from tests.support.tls import PASSWORD, TLS, Material, hashed, make_material, write


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("tls_server_config: [\n", "line 2", "expected"),
        ("tls_sever_config: {}\n", "tls_sever_config", "unknown field"),
        (TLS + "  cert_fil: x\n", "tls_server_config.cert_fil", "unknown field"),
        ("tls_server_config:\n  cert_file: server.pem\n", "tls_server_config.key_file", "missing"),
        (TLS + "  min_version: TLS14\n", "tls_server_config.min_version", "unknown TLS version 'TLS14'"),
        (TLS + "  min_version: TLS13\n  max_version: TLS12\n", "tls_server_config.min_version", "above max_version"),
        (TLS + "  client_auth_type: RequireAnyClientCert\n", "tls_server_config.client_auth_type", "not supported"),
        (TLS + "  client_auth_type: Sometimes\n", "tls_server_config.client_auth_type", "invalid value"),
        (TLS + "  client_ca_file: ca.pem\n", "tls_server_config.client_ca_file", "without a client_auth_type"),
        (TLS + "  client_auth_type: RequireAndVerifyClientCert\n", "tls_server_config.client_auth_type", "needs"),
        (TLS + "  client_allowed_sans: [a]\n", "tls_server_config.client_allowed_sans", "requires"),
        (TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "tls_server_config.cipher_suites", "TLS 1.3"),
        (TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "tls_server_config.cipher_suites", "unknown"),
        (TLS + "  curve_preferences: [X25519]\n", "tls_server_config.curve_preferences", "not supported"),
        (TLS.replace("server.pem", "nope.pem"), "tls_server_config.cert_file", "no such file"),
        (TLS.replace("server.pem", "bad.yml"), "tls_server_config.cert_file", "cannot load"),
        (TLS.replace("server.key", "client.key"), "tls_server_config.cert_file", "cannot load"),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice", "not a bcrypt hash"),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: me\n",
            "http_server_config.headers.X-Powered-By",
            "unknown",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "http_server_config.headers.X-Frame-Options",
            "not one of",
        ),
        ("http_server_config:\n  http2: maybe\n", "http_server_config.http2", "true or false"),
        ("rate_limit:\n  interval: soon\n  burst: 1\n", "rate_limit.interval", "not a duration"),
        ("rate_limit:\n  interval: 1s\n", "rate_limit.burst", "at least 1"),
        ("- a\n- b\n", "", "expected a mapping"),
    ],
)
def test_a_broken_file_is_one_line_naming_file_and_key(material: Material, body: str, key: str, problem: str) -> None:
    path = write(material, body, "bad.yml")
    with pytest.raises(WebConfigError) as err:
        read(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: " if key else f"{path}: "), message
    assert problem in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"/nope.yml: file: cannot read: No such file"):
        read(tmp_path / "nope.yml")


def test_defaults_and_relative_paths(material: Material) -> None:
    config = read(write(material, TLS + f"basic_auth_users:\n  alice: '{hashed().replace('$2b$', '$2y$')}'\n"))
    assert config.tls is not None
    assert config.tls.cert_file == material.cert  # relative to the file's directory, as in the toolkit
    assert (config.tls.min_version, config.tls.max_version, config.tls.client_auth_type) == (
        "TLS12",
        "TLS13",
        "NoClientCert",
    )
    assert list(config.users) == ["alice"]
    assert parse("", Path("empty.yml")).tls is None  # an empty file: plain HTTP, no auth


def test_go_durations() -> None:
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("250ms") == 0.25
    assert parse_go_duration(0) == 0


def test_basic_credentials() -> None:
    assert basic_credentials("Basic YWxpY2U6czNjcjp0") == ("alice", b"s3cr:t")
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Bearer abc") is None
    assert basic_credentials("Basic YWxpY2U=") is None  # no colon


async def test_verified_passwords_are_cached() -> None:
    cache = PasswordCache()
    users = {"alice": hashed().encode()}
    assert await cache.check(users, "alice", PASSWORD)
    for _ in range(5):
        assert await cache.check(users, "alice", PASSWORD)
    assert cache.bcrypt_runs == 1
    assert not await cache.check(users, "alice", b"wrong")
    assert not await cache.check(users, "bob", PASSWORD)  # unknown users pay a bcrypt too
    assert cache.bcrypt_runs == 3
    users["alice"] = hashed(b"new").encode()  # a new hash in the file invalidates the cached password
    assert not await cache.check(users, "alice", PASSWORD)
    assert await cache.check(users, "alice", b"new")
    users["alice"] = hashed().replace("$2b$", "$2y$").encode()  # htpasswd's $2y$ prefix, as in the toolkit's docs
    assert await cache.check(users, "alice", PASSWORD)
