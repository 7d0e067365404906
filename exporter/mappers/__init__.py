"""The metric mappers, listed in one place: a new subsystem is one module here, one dashboard, one rule group.

``STANDARD`` is what every hub gets (in this order, which is the order of families in the
exposition); ``session.SessionMetrics`` is added for live sources only, by the application.
"""

from __future__ import annotations

from exporter.mappers.dht import Dht
from exporter.mappers.events import Events
from exporter.mappers.exporter_self import ExporterSelf
from exporter.mappers.peerstore import PeerStore
from exporter.mappers.runtime import Runtime
from exporter.mappers.streams import Streams
from exporter.mappers.swarm import Swarm
from exporter.mappers.traffic import Traffic
from exporter.model.labels import Cardinality
from exporter.pipeline.mapper import Mapper

STANDARD: tuple[type[Mapper], ...] = (ExporterSelf, Runtime, Swarm, Streams, Traffic, Dht, PeerStore, Events)


def standard_mappers(cardinality: Cardinality) -> list[Mapper]:
    """One of each standard mapper, sharing the process's label caps."""
    return [cls(cardinality) for cls in STANDARD]


__all__ = ["STANDARD", "standard_mappers"]
