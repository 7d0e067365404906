"""The eight dashboards, one module each, by the name their JSON file carries (``libp2p-<name>.json``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.boards.churn import churn
from dashboards.boards.connections import connections
from dashboards.boards.dht import dht
from dashboards.boards.exporter_health import exporter_health
from dashboards.boards.overview import overview
from dashboards.boards.peerstore import peerstore
from dashboards.boards.pubsub import pubsub
from dashboards.boards.streams import streams
from dashboards.boards.traffic import traffic

DASHBOARDS: dict[str, Callable[[dict[str, Any]], dm.Dashboard]] = {
    "overview": overview,
    "connections": connections,
    "streams": streams,
    "traffic": traffic,
    "dht": dht,
    "peerstore": peerstore,
    "churn": churn,
    "exporter-health": exporter_health,
    "pubsub": pubsub,
}
