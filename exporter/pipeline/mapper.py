"""What a mapper is: a per-node accumulator, fed by snapshots and events, read at scrape time.

The hub drives every mapper it was given (one ``StateStep`` per accepted State, one ``EventView`` per
Event); the Prometheus sink asks each one to write its node's samples. A mapper turns one part of the protocol's State (a *subsystem* in docs/protocol.md: swarm,
streams, DHT...) or the exporter's own bookkeeping into metrics.
"""

from __future__ import annotations

from typing import Any, ClassVar

from exporter.model.catalogue import Writer
from exporter.model.labels import Cardinality
from exporter.pipeline.events import EventView
from exporter.pipeline.lean import StateStep
from exporter.pipeline.node import NodeState


class Mapper:
    """Base class: one per mapper module. Subclasses override what they need.

    ``always`` mappers are exported even when the node's data is stale (the exporter's own
    metrics about the node); the others only while the node is fresh.
    """

    name: ClassVar[str] = ""
    always: ClassVar[bool] = False

    def __init__(self, cardinality: Cardinality) -> None:
        self.card = cardinality

    def new_accumulator(self) -> Any:
        return None

    def on_state(self, acc: Any, step: StateStep) -> None:
        """Called once per accepted State, in order, with what it shows and what it changed."""

    def on_event(self, acc: Any, event: EventView) -> None:
        """Called once per Event."""

    def collect(self, acc: Any, node: NodeState, out: Writer) -> None:
        """Write this node's samples for one scrape (through the node's series budget).

        Only the families declared at the top of the mapper's module; a mapper that raises has
        what it wrote for this node dropped and is counted in ``libp2p_exporter_mapper_errors_total``.
        """
