"""Render once per change: per-node exposition blocks kept as bytes, joined per scrape.

A node's block is written by the mappers through the one ``Writer`` interface (``exporter.model.catalogue``); the
lines are formatted as they are written and cached until the node changes. The output is byte for
byte what prometheus_client 0.26's ``generate_latest`` (text 0.0.4) and OpenMetrics
``generate_latest`` print for the same families and samples.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from exporter.sinks.exposition.block import EMPTY, SHARED, Block, BlockWriter, Head, Part, Templates
from exporter.sinks.exposition.client import collector_block
from exporter.sinks.exposition.join import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Format,
    accepts_gzip,
    encode_body,
    join,
    negotiate,
)

__all__ = [
    "EMPTY",
    "OPENMETRICS_CONTENT_TYPE",
    "SHARED",
    "TEXT_CONTENT_TYPE",
    "Block",
    "BlockWriter",
    "CachedBlock",
    "Format",
    "Head",
    "Part",
    "Templates",
    "accepts_gzip",
    "collector_block",
    "encode_body",
    "join",
    "negotiate",
]


class CachedBlock:
    """One node's block, rendered again only when the node's version changes.

    ``version`` is whatever identifies what the block shows (e.g. the accepted State's sequence number
    together with the node's freshness). Callers serialise access per node (the node's lock).
    """

    __slots__ = ("_block", "_templates", "_version", "base", "renders")

    def __init__(self, base: Mapping[str, str] | None = None, templates: Templates = SHARED) -> None:
        self.base = dict(base or {})
        self._templates = templates
        self._block = EMPTY
        self._version: Hashable = object()
        self.renders = 0

    def get(self, version: Hashable, fill: Callable[[BlockWriter], None]) -> Block:
        if version != self._version:
            writer = BlockWriter(self.base, self._templates)
            fill(writer)
            self._block = writer.finish()
            self._version = version
            self.renders += 1
        return self._block
