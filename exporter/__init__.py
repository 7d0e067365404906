"""libp2p-exporter: libp2p introspection snapshots to Prometheus metrics and OpenTelemetry spans."""

__version__ = "0.1.0"
