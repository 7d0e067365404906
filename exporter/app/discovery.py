"""``GET /discovery``: the nodes this replica owns, in Prometheus' ``http_sd_configs`` format.

Prometheus then scrapes each node through ``/probe`` on the replica that owns it, so every node gets
its own ``up``, scrape duration and sample limit, and Prometheus' ``hashmod`` sharding works on top.
Each group's address is the one Prometheus used to reach this endpoint (the request's Host), unless
``--web.external-address`` says otherwise. The node's name and labels already come on its series, so
they are offered only as ``__meta_libp2p_*`` labels (a target label of the same name would push the
series' own label to ``exported_*``); ``instance`` is the node's URL without credentials, the same on
whichever replica owns it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.model.text import redact_url
from exporter.sources.options import Target
from exporter.sources.sharding import Shard


def target_groups(
    targets: list[Target], address: str, scheme: str, shard: Shard, probe_path: str = "/probe"
) -> list[dict[str, object]]:
    """One http_sd target group per node: scrape ``address`` at /probe?target=URL."""
    groups: list[dict[str, object]] = []
    for t in sorted(targets, key=lambda t: t.name):
        public = redact_url(t.url)
        labels = {
            "__scheme__": scheme,
            "__metrics_path__": probe_path,
            "__param_target": public,
            "instance": public,
            "__meta_libp2p_node": t.name,
            "__meta_libp2p_shard": str(shard.index),
            "__meta_libp2p_total_shards": str(shard.total),
        }
        for key, value in t.labels.items():
            labels[f"__meta_libp2p_label_{key}"] = value
        groups.append({"targets": [address], "labels": labels})
    return groups


def discovery_handler(
    targets: Callable[[], list[Target]], shard: Callable[[], Shard], external_address: str | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The /discovery route over the replica's current (owned) targets."""

    async def discovery(request: web.Request) -> web.Response:
        address = external_address or request.host
        scheme = "https" if request.secure else "http"
        body = json.dumps(target_groups(targets(), address, scheme, shard()), indent=1)
        return web.Response(text=body + "\n", content_type="application/json")

    return discovery
