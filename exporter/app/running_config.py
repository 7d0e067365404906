"""``GET /config``: the running configuration, as blackbox_exporter and Prometheus show theirs, with
credentials redacted (a URL's ``user:password@`` becomes ``***@``; secrets by name are never shown)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from exporter.model.text import has_userinfo, redact_url, safe_text

# Field names whose values are secret whatever they look like.
SECRET_WORDS = ("password", "secret", "token", "seed", "key")


def redacted(value: Any, name: str = "") -> Any:
    """``value`` as plain YAML data: dataclasses by their public fields, URLs without credentials,
    secrets by field name replaced, anything else by its text."""
    if value is not None and any(word in name.lower() for word in SECRET_WORDS) and not isinstance(value, bool):
        return "<secret>" if value else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: redacted(getattr(value, f.name), f.name)
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, dict):
        return {str(k): redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redacted(v, name) for v in value]
    if isinstance(value, bytes):
        return "<secret>"
    if isinstance(value, str):
        return redact_url(value) if has_userinfo(value) else safe_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return safe_text(str(value))


def config_text(parts: dict[str, Any]) -> str:
    return yaml.safe_dump(redacted(parts), sort_keys=False, default_flow_style=False)


def config_handler(parts: Callable[[], dict[str, Any]]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def config(_: web.Request) -> web.Response:
        return web.Response(text=config_text(parts()), content_type="text/plain")

    return config
