"""The producer side of the introspection protocol: Introspector, data providers and the Endpoint.

``from exporter.introspector import Introspector, Endpoint`` serves any node; the py-libp2p
provider lives in ``exporter.introspector.libp2p_provider`` (optional extra ``libp2p``).
"""

from exporter.introspector.api import Introspector, event_type, now_ms
from exporter.introspector.endpoint import Endpoint, EndpointOptions, clamp_config

__all__ = ["Endpoint", "EndpointOptions", "Introspector", "clamp_config", "event_type", "now_ms"]
