"""The web configuration applied to every request: rate limit, client SANs, basic auth, headers.

One aiohttp middleware guards every route the application has or will have (/metrics, /probe,
/healthz, /, and 404s), as the exporter-toolkit wraps the whole handler; there is no unauthenticated
path. bcrypt runs in a worker thread, one at a time, and only when a user's password is not the one
already verified: a scrape every 15 s costs one bcrypt per user per process, not one per scrape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import bcrypt
from aiohttp import web

from exporter.web_config import WebConfig, WebConfigError, WebConfigWatcher

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PasswordCache:
    """Remembers, per user, a keyed digest of the last password bcrypt accepted against that user's hash."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._ok: dict[str, tuple[bytes, bytes]] = {}  # user -> (bcrypt hash, keyed digest); configured users only
        self._lock = asyncio.Lock()  # one bcrypt at a time: a flood of wrong passwords costs one core at most
        self._dummy: bytes | None = None
        self.bcrypt_runs = 0

    def _digest(self, password: bytes) -> bytes:
        return hmac.new(self._key, password, hashlib.sha256).digest()

    def _dummy_hash(self) -> bytes:
        """Unknown users pay a bcrypt too, so timing does not tell which user names exist."""
        if self._dummy is None:
            self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(10))
        return self._dummy

    async def check(self, users: dict[str, bytes], user: str, password: bytes) -> bool:
        hashed = users.get(user)
        digest = self._digest(password)
        cached = self._ok.get(user)
        if (
            hashed is not None
            and cached is not None
            and hmac.compare_digest(cached[0], hashed)
            and hmac.compare_digest(cached[1], digest)
        ):
            return True
        async with self._lock:
            self.bcrypt_runs += 1
            loop = asyncio.get_running_loop()
            target = hashed if hashed is not None else self._dummy_hash()
            ok = await loop.run_in_executor(None, _bcrypt_ok, password, target)
        if ok and hashed is not None:
            self._ok[user] = (hashed, digest)
            return True
        return False


def _bcrypt_ok(password: bytes, hashed: bytes) -> bool:
    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a hash bcrypt cannot read (checked at load; defensive)
        return False


def basic_credentials(header: str) -> tuple[str, bytes] | None:
    """``Authorization: Basic base64(user:password)`` → (user, password), or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password


def san_allowed(peercert: dict[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    """Does a verified client certificate carry one of the allowed SANs (DNS, IP, e-mail or URI)?"""
    if not peercert:
        return False
    wanted = set(allowed)
    ips = set()
    for a in allowed:
        with contextlib.suppress(ValueError):
            ips.add(ipaddress.ip_address(a))
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                if ipaddress.ip_address(value.strip()) in ips:
                    return True
            except ValueError:
                continue
        elif value in wanted:
            return True
    return False


class TokenBucket:
    """``rate_limit``: one request per ``interval`` on average, ``burst`` at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens = 0.0
        self._at = clock()
        self._shape: tuple[float, int] = (0.0, 0)

    def allow(self, interval: float, burst: int) -> bool:
        now = self._clock()
        if (interval, burst) != self._shape:  # new limits: start full
            self._shape = (interval, burst)
            self._tokens, self._at = float(burst), now
        self._tokens = min(float(burst), self._tokens + (now - self._at) / interval)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Guard:
    """State shared by the middleware: the watcher, the password cache, the bucket, counters."""

    def __init__(self, watcher: WebConfigWatcher) -> None:
        self.watcher = watcher
        self.passwords = PasswordCache()
        self.bucket = TokenBucket()
        self.denied: dict[str, int] = {"unauthorized": 0, "rate_limited": 0, "client_san": 0, "config_error": 0}
        self._last_error = ""

    def _config(self) -> WebConfig | None:
        try:
            config = self.watcher.current()
        except WebConfigError as exc:
            if str(exc) != self._last_error:  # logged once per distinct problem, not per request
                self._last_error = str(exc)
                log.error("web config no longer valid, answering 500 until fixed: %s", exc)
            return None
        if self._last_error:
            self._last_error = ""
            log.info("web config %s valid again", self.watcher.path)
        return config

    async def check(self, request: web.Request) -> web.StreamResponse | None:
        """None when the request may pass, else the response that refuses it."""
        config = self._config()
        if config is None:
            self.denied["config_error"] += 1
            return web.Response(status=500, text="Internal Server Error\n")
        if config.rate_interval > 0 and not self.bucket.allow(config.rate_interval, config.rate_burst):
            self.denied["rate_limited"] += 1
            return web.Response(status=429, text="Too Many Requests\n")
        tls = config.tls
        if tls is not None and (tls.client_allowed_sans or tls.client_auth_type == "RequireAndVerifyClientCert"):
            # The handshake enforces this; checked again because a connection accepted just before the
            # file tightened its policy was accepted under the old one.
            peercert = request.transport.get_extra_info("peercert") if request.transport else None
            if not peercert or (tls.client_allowed_sans and not san_allowed(peercert, tls.client_allowed_sans)):
                self.denied["client_san"] += 1
                return web.Response(status=403, text="Forbidden\n", headers={"Connection": "close"})
        if config.users:
            creds = basic_credentials(request.headers.get("Authorization", ""))
            if creds is None or not await self.passwords.check(config.users, *creds):
                self.denied["unauthorized"] += 1
                return web.Response(status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Basic"})
        return None


GUARD: web.AppKey[Guard] = web.AppKey("web_config_guard", Guard)


def install(app: web.Application, watcher: WebConfigWatcher) -> Guard:
    """Guard every route of ``app`` and add the configured headers to every response it sends."""
    guard = Guard(watcher)

    @web.middleware
    async def web_config_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = await guard.check(request)
        if refused is not None:
            return refused
        return await handler(request)

    async def add_headers(_request: web.Request, response: web.StreamResponse) -> None:
        for name, value in watcher.config.headers.items():
            response.headers[name] = value

    app.middlewares.append(web_config_middleware)
    app.on_response_prepare.append(add_headers)
    app[GUARD] = guard
    return guard
