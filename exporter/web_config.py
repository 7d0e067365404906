"""``--web.config.file``: TLS, basic auth, headers and a rate limit, in Prometheus' exporter-toolkit format.

The file is the one node_exporter and Prometheus take (``tls_server_config``, ``http_server_config``,
``basic_auth_users``, ``rate_limit``), so one file serves a fleet. Like the toolkit, the file is
consulted on every request and every TLS handshake; a stat of the file (and of the certificate files
it names) decides whether it is parsed again, so a scrape costs a few ``stat`` calls. What Python's
``ssl`` cannot do the way Go does is refused with a line that says so, never ignored.

The file is checked whole at start (``load``): a broken one stops the exporter with
``FILE: key: problem``. A file broken later makes requests fail with 500 (and handshakes fail) until it
is fixed, as with the toolkit: serving with a configuration nobody can see would be worse.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import ssl
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from exporter.certdates import CertificateWatch

# Go's names for the TLS 1.2 suites crypto/tls calls secure, and OpenSSL's names for the same suites.
GO_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# client_auth_type: what Python's ssl can do. It cannot ask for a certificate without verifying it.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_AUTH = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
# The headers the toolkit lets a file set, and the values it accepts where they are an enumeration.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
BCRYPT = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")
_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def add_flag(p: argparse._ActionsContainer) -> None:
    """``--web.config.file``, as exporters built on the toolkit spell it."""
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        metavar="FILE",
        help="TLS and basic auth for every HTTP path, in the exporter-toolkit format (docs/web-config.md)",
    )


class WebConfigError(ValueError):
    """One line: ``FILE: key: problem``."""


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str = ""
    key: str = ""
    client_ca_file: Path | None = None
    client_ca: str = ""
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)


# The settings' names are the toolkit's keys; curve_preferences is known only to be refused.
TLS_KEYS = {f.name for f in fields(TLSSettings)} | {"curve_preferences"}


@dataclass(frozen=True)
class WebConfig:
    path: Path
    tls: TLSSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    http2: bool = True
    rate_interval: float = 0.0  # seconds between requests; 0 = no limit
    rate_burst: int = 0


def _fail(path: Path, key: str, problem: str) -> WebConfigError:
    return WebConfigError(f"{path}: {key}: {problem}")


def parse_go_duration(value: Any) -> float:
    """Seconds from a Go duration (``1s``, ``500ms``, ``1m30s``, ``0``)."""
    text = str(value).strip()
    if text == "0":
        return 0.0
    if isinstance(value, bool) or not _GO_DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration (like 1s, 500ms or 1m30s)")
    return sum(float(n) * _UNIT[u] for n, u in _GO_DURATION_PART.findall(text))


def _mapping(path: Path, key: str, value: Any, allowed: set[str] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, key, f"expected a mapping, got {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise _fail(path, key, f"key {k!r} is not a string")
        if allowed is not None and k not in allowed:
            raise _fail(path, f"{key}.{k}" if key else k, f"unknown field (known: {', '.join(sorted(allowed))})")
    return value


def _string(path: Path, key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(path, key, f"expected a string, got {type(value).__name__}")
    return value


def _strings(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(path, key, "expected a list of strings")
    return tuple(_string(path, f"{key}[{i}]", v) for i, v in enumerate(value))


def _file(path: Path, key: str, value: Any) -> Path | None:
    """Relative file names are relative to the configuration file's directory, as in the toolkit."""
    name = _string(path, key, value)
    return (path.parent / name) if name else None


def _parse_tls(path: Path, raw: Any) -> TLSSettings | None:
    t = _mapping(path, "tls_server_config", raw, TLS_KEYS)
    k = "tls_server_config."
    s = TLSSettings(
        cert_file=_file(path, k + "cert_file", t.get("cert_file")),
        key_file=_file(path, k + "key_file", t.get("key_file")),
        cert=_string(path, k + "cert", t.get("cert")),
        key=_string(path, k + "key", t.get("key")),
        client_ca_file=_file(path, k + "client_ca_file", t.get("client_ca_file")),
        client_ca=_string(path, k + "client_ca", t.get("client_ca")),
        client_auth_type=_string(path, k + "client_auth_type", t.get("client_auth_type")) or "NoClientCert",
        client_allowed_sans=_strings(path, k + "client_allowed_sans", t.get("client_allowed_sans")),
        min_version=_string(path, k + "min_version", t.get("min_version")) or "TLS12",
        max_version=_string(path, k + "max_version", t.get("max_version")) or "TLS13",
        cipher_suites=_strings(path, k + "cipher_suites", t.get("cipher_suites")),
        prefer_server_cipher_suites=t.get("prefer_server_cipher_suites", True),
    )
    enabled = any([s.cert_file, s.key_file, s.cert, s.key, s.client_ca_file, s.client_ca, "client_auth_type" in t])
    if not isinstance(s.prefer_server_cipher_suites, bool):
        raise _fail(path, k + "prefer_server_cipher_suites", "expected true or false")
    if t.get("curve_preferences"):
        raise _fail(path, k + "curve_preferences", "not supported: Python's ssl cannot order key exchange groups")
    if not enabled:
        if t:
            raise _fail(path, "tls_server_config", "set cert_file and key_file (or cert and key) to serve TLS")
        return None
    if s.cert_file and s.cert:
        raise _fail(path, k + "cert", "give cert or cert_file, not both")
    if s.key_file and s.key:
        raise _fail(path, k + "key", "give key or key_file, not both")
    if s.client_ca_file and s.client_ca:
        raise _fail(path, k + "client_ca", "give client_ca or client_ca_file, not both")
    if not (s.cert_file or s.cert):
        raise _fail(path, k + "cert_file", "missing (one of cert or cert_file is needed)")
    if not (s.key_file or s.key):
        raise _fail(path, k + "key_file", "missing (one of key or key_file is needed)")
    for name in ("min_version", "max_version"):
        if getattr(s, name) not in TLS_VERSIONS:
            raise _fail(path, k + name, f"unknown TLS version {getattr(s, name)!r} (one of {', '.join(TLS_VERSIONS)})")
    if TLS_VERSIONS[s.min_version] > TLS_VERSIONS[s.max_version]:
        raise _fail(path, k + "min_version", f"{s.min_version} is above max_version {s.max_version}")
    auth = s.client_auth_type
    if auth in UNVERIFIED_AUTH:
        raise _fail(
            path,
            k + "client_auth_type",
            f"{auth} is not supported: Python's ssl cannot accept a client certificate without verifying it "
            "(use VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
        )
    if auth not in CLIENT_AUTH:
        raise _fail(path, k + "client_auth_type", f"invalid value {auth!r} (one of {', '.join(CLIENT_AUTH)})")
    has_ca = bool(s.client_ca_file or s.client_ca)
    if has_ca and auth == "NoClientCert":
        raise _fail(path, k + "client_ca_file", "client CAs are configured without a client_auth_type")
    if auth != "NoClientCert" and not has_ca:
        raise _fail(path, k + "client_auth_type", f"{auth} needs client_ca_file (or client_ca) to verify against")
    if s.client_allowed_sans and auth != "RequireAndVerifyClientCert":
        raise _fail(path, k + "client_allowed_sans", "requires client_auth_type RequireAndVerifyClientCert")
    for suite in s.cipher_suites:
        if suite in TLS13_SUITES:
            raise _fail(
                path,
                k + "cipher_suites",
                f"{suite} is a TLS 1.3 suite; TLS 1.3 suites cannot be chosen (list TLS 1.2 suites only)",
            )
        if suite not in GO_CIPHERS:
            raise _fail(path, k + "cipher_suites", f"unknown or insecure cipher suite {suite!r}")
    return s


def parse(text: str | bytes, path: Path) -> WebConfig:
    """Check a web configuration file's content; raise ``WebConfigError`` naming the first problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        raise _fail(path, where, str(getattr(exc, "problem", None) or exc).replace("\n", " ")) from None
    top = _mapping(path, "", raw, TOP_KEYS)
    tls = _parse_tls(path, top.get("tls_server_config"))
    http = _mapping(path, "http_server_config", top.get("http_server_config"), {"http2", "headers"})
    http2 = http.get("http2", True)
    if not isinstance(http2, bool):
        raise _fail(path, "http_server_config.http2", "expected true or false")
    headers: dict[str, str] = {}
    for name, value in _mapping(path, "http_server_config.headers", http.get("headers"), set(HEADERS)).items():
        text_value = _string(path, f"http_server_config.headers.{name}", value)
        if HEADERS[name] and text_value not in HEADERS[name]:
            raise _fail(
                path, f"http_server_config.headers.{name}", f"{text_value!r} is not one of {', '.join(HEADERS[name])}"
            )
        if any(c in text_value for c in "\r\n\0"):
            raise _fail(path, f"http_server_config.headers.{name}", "contains a line break")
        if text_value:
            headers[name] = text_value
    users: dict[str, bytes] = {}
    for user, hashed in _mapping(path, "basic_auth_users", top.get("basic_auth_users"), None).items():
        value = _string(path, f"basic_auth_users.{user}", hashed)
        if not BCRYPT.match(value):
            raise _fail(path, f"basic_auth_users.{user}", "not a bcrypt hash (like $2y$10$ followed by 53 characters)")
        users[user] = value.encode()
    rate = _mapping(path, "rate_limit", top.get("rate_limit"), {"interval", "burst"})
    try:
        interval = parse_go_duration(rate.get("interval", 0))
    except ValueError as exc:
        raise _fail(path, "rate_limit.interval", str(exc)) from None
    burst = rate.get("burst", 0)
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
        raise _fail(path, "rate_limit.burst", "expected a whole number of requests, 0 or more")
    if interval > 0 and burst < 1:
        raise _fail(path, "rate_limit.burst", "must be at least 1 when an interval is set (else nothing is served)")
    return WebConfig(path, tls, users, headers, http2, interval, burst)


def _pem_file(directory: str, name: str, text: str) -> str:
    target = os.path.join(directory, name)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return target


def build_ssl_context(config: WebConfig) -> ssl.SSLContext:
    """An SSL context for ``config.tls``; errors name the key and the file like ``parse`` does."""
    s = config.tls
    assert s is not None
    path = config.path
    k = "tls_server_config."
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[s.min_version]
    ctx.maximum_version = TLS_VERSIONS[s.max_version]
    ctx.set_alpn_protocols(["http/1.1"])  # this server speaks HTTP/1.1; h2 clients fall back
    if s.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if s.cipher_suites:
        try:
            ctx.set_ciphers(":".join(GO_CIPHERS[c] for c in s.cipher_suites))
        except ssl.SSLError:
            raise _fail(path, k + "cipher_suites", "none of these suites is available in this OpenSSL") from None
    with tempfile.TemporaryDirectory(prefix="webcfg-") as tmp:  # inline PEM: ssl loads files only
        cert = str(s.cert_file) if s.cert_file else _pem_file(tmp, "cert.pem", s.cert)
        key = str(s.key_file) if s.key_file else _pem_file(tmp, "key.pem", s.key)
        for name, file in (("cert_file", s.cert_file), ("key_file", s.key_file)):
            if file is not None and not file.is_file():
                raise _fail(path, k + name, f"cannot read {file}: no such file")
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise _fail(path, k + "cert_file", f"cannot load the certificate and key: {_ssl_reason(exc)}") from None
    if s.client_ca_file or s.client_ca:
        try:
            if s.client_ca_file:
                ctx.load_verify_locations(cafile=str(s.client_ca_file))
            else:
                ctx.load_verify_locations(cadata=s.client_ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise _fail(path, k + "client_ca_file", f"cannot load the client CA: {_ssl_reason(exc)}") from None
        if not ctx.get_ca_certs():
            raise _fail(path, k + "client_ca_file", "holds no certificate")
    ctx.verify_mode = CLIENT_AUTH[s.client_auth_type]
    return ctx


def _ssl_reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)


def read(path: str | Path) -> WebConfig:
    """Read, parse and check everything (TLS material included), as at start."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise _fail(p, "file", f"cannot read: {exc.strerror or exc}") from None
    config = parse(text, p)
    if config.tls is not None:
        build_ssl_context(config)
    return config


# A file written within this long before it was last read could change again without its stat changing
# (coarse file system clocks, same size): until it is older, its content is compared too (git's "racy" rule).
RACY_NS = 2_000_000_000


def _digests(paths: tuple[Path, ...]) -> tuple[bytes, ...]:
    out = []
    for p in paths:
        try:
            out.append(hashlib.sha256(p.read_bytes()).digest())
        except OSError:
            out.append(b"")
    return tuple(out)


def _stamp(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int, int], ...]:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((-1, -1, -1, -1))
    return tuple(out)


def _policy(config: WebConfig) -> tuple[object, ...]:
    """What OpenSSL copies into a connection when it is accepted, before the file can be consulted."""
    t = config.tls
    if t is None:
        return ()
    return (t.client_auth_type, t.min_version, t.max_version, t.cipher_suites, t.prefer_server_cipher_suites)


_DEFAULT_CIPHERS = ":".join(
    c["name"] for c in ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).get_ciphers() if c["protocol"] != "TLSv1.3"
)


def _apply_policy(ctx: ssl.SSLContext, config: WebConfig) -> None:
    """Copy a new file's per-connection settings onto the listening context, for the connections to come."""
    t = config.tls
    assert t is not None
    ctx.verify_mode = CLIENT_AUTH[t.client_auth_type]
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED  # widen first: min above max is refused
    ctx.maximum_version = TLS_VERSIONS[t.max_version]
    ctx.minimum_version = TLS_VERSIONS[t.min_version]
    ctx.set_ciphers(":".join(GO_CIPHERS[c] for c in t.cipher_suites) if t.cipher_suites else _DEFAULT_CIPHERS)
    if t.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE


class WebConfigWatcher:
    """The current configuration, parsed again only when a stat says the file (or its certificates) changed.

    TLS follows the file as in the toolkit: each handshake consults it. Certificate, key and client CA
    changes apply to that very handshake (the connection switches to a context built from the new
    file). Client auth type, versions and cipher suites are fixed by OpenSSL when a connection is
    accepted, so a handshake that is the first to see them change is refused (fail closed; the client's
    retry gets the new policy), and every later connection is accepted with it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = read(self.path)  # raises WebConfigError: refused at start
        self._stamp: tuple[tuple[int, int, int, int], ...] = ()
        self._digests: tuple[bytes, ...] = ()
        self._racy = True
        self._changed()
        self._error: WebConfigError | None = None
        self._ssl: ssl.SSLContext | None = build_ssl_context(self.config) if self.config.tls else None
        self._listening: ssl.SSLContext | None = None
        self._listening_policy: tuple[object, ...] = _policy(self.config)
        self.reloads = 0
        self.refused_handshakes = 0
        self.certificates = CertificateWatch()  # their dates: warned about, and exported
        self.certificates.load(self.config.tls, "at start")

    @staticmethod
    def _tls_files(config: WebConfig) -> tuple[Path, ...]:
        return config.tls.files() if config.tls else ()

    def _changed(self) -> bool:
        """A stat of each file; their content too while a write is recent enough to hide behind the stat."""
        files = (self.path, *self._tls_files(self.config))
        stamp = _stamp(files)
        if stamp == self._stamp and not self._racy:
            return False
        self._stamp = stamp
        self._racy = time.time_ns() - max(s[0] for s in stamp) < RACY_NS
        digests = _digests(files)
        if digests == self._digests:
            return False
        self._digests = digests
        return True

    def current(self) -> WebConfig:
        """The configuration now in force; raises ``WebConfigError`` while the file is broken."""
        if self._changed():
            try:
                config = read(self.path)
            except WebConfigError as exc:
                self._error = exc
            else:
                self._error = None
                self.config = config
                self._ssl = build_ssl_context(config) if config.tls else None
                if self._listening is not None and config.tls is not None:
                    _apply_policy(self._listening, config)
                    self._listening_policy = _policy(config)
                self._changed()  # watch the files the new configuration names
                self.reloads += 1
                self.certificates.load(config.tls, "after reload")
        if self._error is not None:
            raise self._error
        self.certificates.recheck()
        return self.config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context to listen with (None without TLS); its handshakes follow the file."""
        if self._ssl is None:
            return None
        listening = self._listening = self._ssl
        self._listening_policy = _policy(self.config)

        def on_hello(sock: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
            accepted_with = self._listening_policy  # (the HTTP layer re-checks a required client certificate)
            try:
                config = self.current()
            except WebConfigError:
                self.refused_handshakes += 1
                return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
            if self._ssl is None:  # TLS removed from the file: this listener cannot turn into plain HTTP
                self.refused_handshakes += 1
                return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
            if _policy(config) != accepted_with:
                self.refused_handshakes += 1
                return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
            if self._ssl is not listening:
                sock.context = self._ssl
            return None

        listening.sni_callback = on_hello
        return listening
