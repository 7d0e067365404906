"""Live mode's running configuration, and reloading it (SIGHUP, ``POST /-/reload``) without a restart.

A reload merges flags, environment and file again, exactly as at start. What it can apply while
running, it applies: targets (new ones start, removed ones stop and their series go, changed ones
restart, unchanged ones keep their session and counters), the shard, ``metrics.nodes`` and the /probe
policy. Settings that only a restart applies (where to listen, session tuning, recording) are named in
a warning. A broken file is refused with the same ``FILE:LINE: key:`` lines as ``check-config``; the
running configuration stays, and ``libp2p_exporter_config_last_reload_successful`` says 0, as
Prometheus' own gauge does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from aiohttp import web

from exporter.app.config import LiveConfig
from exporter.app.config_values import ConfigError
from exporter.app.flags import log_level
from exporter.app.probe import ProbePolicy
from exporter.model.catalogue import Family, Writer
from exporter.model.text import redact_url
from exporter.sources.manager import SessionManager
from exporter.sources.options import Target

log = logging.getLogger("libp2p-exporter")

RELOAD_SUCCESSFUL = Family(
    "libp2p_exporter_config_last_reload_successful",
    "gauge",
    "Whether the last configuration reload succeeded (1) or was refused (0).",
)
RELOAD_SUCCESS_TIMESTAMP = Family(
    "libp2p_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the configuration was last loaded successfully (at start or by a reload).",
)
SHARD_TARGETS = Family(
    "libp2p_exporter_shard_targets",
    "gauge",
    "Configured targets this replica watches (its shard's), out of the whole configuration's.",
    ("shard", "total_shards"),
)

# What a running exporter cannot change (LiveConfig fields, dotted into its parts); a reload that
# changes them says so.
RESTART_ONLY = (
    "serving.listen",
    "serving.telemetry_path",
    "serving.web_config_file",
    "options",
    "recording",
    "histograms",
)


@dataclass
class ReloadStatus:
    """What the last reload did, for the exporter's own metrics."""

    successful: bool = True
    last_success: float = field(default_factory=time.time)
    reloads: int = 0
    failures: int = 0


class LiveState:
    """The configuration live mode runs with, the policy it derives, and how to reload both."""

    def __init__(self, cfg: LiveConfig, manager: SessionManager, rebuild: Callable[[], LiveConfig]) -> None:
        self.cfg = cfg
        self.manager = manager
        self.rebuild = rebuild
        self.policy = policy_of(cfg)
        self._by_url = url_index(cfg)
        self.status = ReloadStatus()
        self._lock = asyncio.Lock()  # one reload at a time: SIGHUP and POST may race

    # -- what /probe and /discovery ask -----------------------------------------------------------

    def configured(self, url: str) -> Target | None:
        """The owned, running configured target probed as ``url`` (its URL, or that URL without credentials)."""
        target = self._by_url.get(url)
        return target if target is not None and self.manager.targets.get(target.name) == target else None

    def elsewhere(self, url: str) -> str | None:
        """Why this replica does not serve ``url``: it is another shard's target (or None)."""
        target, shard = self._by_url.get(url), self.cfg.shard
        if target is None or shard.owns(target.name):
            return None
        return f"target {target.name!r} belongs to shard {shard.of(target.name)} of {shard.total}, not {shard.index}"

    # -- reloading --------------------------------------------------------------------------------

    async def reload(self, why: str) -> tuple[bool, str]:
        """Re-read and apply the configuration; (ok, a one-paragraph account for the caller)."""
        async with self._lock:
            self.status.reloads += 1
            try:
                cfg = self.rebuild()
            except ConfigError as exc:
                self.status.successful = False
                self.status.failures += 1
                log.error("reload (%s) refused; the running configuration stays:", why)
                for problem in exc.problems:
                    log.error("  %s", problem)
                return False, "\n".join(exc.problems)
            stuck = [name for name in RESTART_ONLY if _restart_value(cfg, name) != _restart_value(self.cfg, name)]
            if stuck:
                log.warning("reload (%s): %s changed; only a restart applies that", why, ", ".join(stuck))
            if cfg.serving.log_level != self.cfg.serving.log_level:
                logging.getLogger().setLevel(log_level(cfg.serving.log_level))
            self.manager.hide_nodes = cfg.metrics_nodes == "none"
            added, removed, restarted = await self.manager.sync(cfg.owned_targets)
            for name in self.manager.configured:  # --metrics.nodes may have changed
                node = self.manager.hub.nodes.get(name)
                if node is not None:
                    node.hidden = self.manager.hide_nodes
            self.cfg = cfg
            self.policy = policy_of(cfg)
            self._by_url = url_index(cfg)
            self.status.successful = True
            self.status.last_success = time.time()
            text = (
                f"reloaded ({why}): {len(cfg.owned_targets)} target(s) on {cfg.shard}; "
                f"{len(added)} added, {len(removed)} removed, {len(restarted)} restarted"
            )
            log.info("%s", text)
            return True, text

    def write_metrics(self, out: Writer) -> None:
        """The reload gauges (named as Prometheus names its own) and this replica's shard."""
        out.gauge(RELOAD_SUCCESSFUL, 1.0 if self.status.successful else 0.0)
        out.gauge(RELOAD_SUCCESS_TIMESTAMP, self.status.last_success)
        out.gauge(
            SHARD_TARGETS,
            float(len(self.manager.targets)),
            {"shard": str(self.cfg.shard.index), "total_shards": str(self.cfg.shard.total)},
        )


def _restart_value(cfg: LiveConfig, name: str) -> object:
    """A restart-only setting as a reload compares it: the interval and retention in the session
    options travel with each target (a reload restarts the targets they change), so they are left out."""
    value: object = cfg
    for part in name.split("."):
        value = getattr(value, part)
    return replace(cfg.options, interval_ms=0, retention_ms=0) if name == "options" else value


def reload_handler(state: LiveState, enabled: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``POST /-/reload``: only with ``--web.enable-lifecycle``, as Prometheus has it; 500 and the
    problems when the new configuration is refused."""

    async def reload(_: web.Request) -> web.Response:
        if not enabled:
            return web.Response(status=403, text="Lifecycle API is not enabled (--web.enable-lifecycle).\n")
        ok, text = await state.reload("POST /-/reload")
        return web.Response(status=200 if ok else 500, text=text + "\n")

    return reload


def url_index(cfg: LiveConfig) -> dict[str, Target]:
    """Every configured target by the URLs /probe may name it with: its own, and without credentials
    (what /discovery hands out). Built once per configuration: a scrape looks up, never scans."""
    index: dict[str, Target] = {}
    for target in cfg.targets:
        index.setdefault(target.url, target)
        index.setdefault(redact_url(target.url), target)
    return index


def policy_of(cfg: LiveConfig) -> ProbePolicy:
    return ProbePolicy(enabled=cfg.probe.enabled, allow=cfg.probe.allow, listen=cfg.serving.listen)
