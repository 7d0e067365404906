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
    PROTOBUF_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Format,
    accepts_gzip,
    encode_body,
    join,
    join_parts,
    negotiate,
)
from exporter.sinks.exposition.proto import (
    PROTO_EMPTY,
    ProtoBlock,
    ProtoWriter,
    collector_proto_block,
    join_proto,
    join_proto_parts,
)

__all__ = [
    "EMPTY",
    "OPENMETRICS_CONTENT_TYPE",
    "PROTOBUF_CONTENT_TYPE",
    "PROTO_EMPTY",
    "SHARED",
    "TEXT_CONTENT_TYPE",
    "Block",
    "BlockWriter",
    "CachedBlock",
    "Format",
    "Head",
    "Part",
    "ProtoBlock",
    "ProtoWriter",
    "Templates",
    "accepts_gzip",
    "collector_block",
    "collector_proto_block",
    "encode_body",
    "join",
    "join_parts",
    "join_proto",
    "join_proto_parts",
    "negotiate",
]


class CachedBlock:
    """One node's block, rendered again only when the node's version changes.

    ``version`` is whatever identifies what the block shows (e.g. the accepted State's sequence number
    together with the node's freshness). Callers serialise access per node (the node's lock).

    The protobuf block (``get_proto``) is cached the same way on its own, rendered only when a
    protobuf scrape asks for it: a node scraped in one format holds that format's bytes alone.
    """

    __slots__ = ("_block", "_proto", "_proto_version", "_templates", "_version", "base", "renders")

    def __init__(self, base: Mapping[str, str] | None = None, templates: Templates = SHARED) -> None:
        self.base = dict(base or {})
        self._templates = templates
        self._block = EMPTY
        self._version: Hashable = object()
        self._proto = PROTO_EMPTY
        self._proto_version: Hashable = object()
        self.renders = 0

    def get_proto(self, version: Hashable, fill: Callable[[ProtoWriter], None]) -> ProtoBlock:
        if version != self._proto_version:
            writer = ProtoWriter(self.base)
            fill(writer)
            self._proto = writer.finish()
            self._proto_version = version
            self.renders += 1
        return self._proto

    def get(self, version: Hashable, fill: Callable[[BlockWriter], None]) -> Block:
        if version != self._version:
            writer = BlockWriter(self.base, self._templates)
            fill(writer)
            self._block = writer.finish()
            self._version = version
            self.renders += 1
        return self._block
