"""The subsystem list, in one place: a new subsystem is one module here, one dashboard, one rule group."""

from __future__ import annotations

from exporter.subsystems.base import Subsystem
from exporter.subsystems.dht import Dht
from exporter.subsystems.events import Events
from exporter.subsystems.exporter_self import ExporterSelf
from exporter.subsystems.runtime import Runtime
from exporter.subsystems.streams import Streams
from exporter.subsystems.swarm import Swarm
from exporter.subsystems.traffic import Traffic

SUBSYSTEMS: tuple[type[Subsystem], ...] = (ExporterSelf, Runtime, Swarm, Streams, Traffic, Dht, Events)

__all__ = ["SUBSYSTEMS", "Subsystem"]
