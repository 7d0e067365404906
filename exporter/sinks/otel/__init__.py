"""OpenTelemetry spans from snapshots: connections, streams and DHT queries (``libp2p-exporter[otel]``).

``config`` reads flags and the OTEL_* environment; ``spans`` is the span model; ``sdk`` builds one
TracerProvider per node around a span exporter (OTLP by default); ``metrics`` counts what became
of each span; ``sink`` is the hub listener and its lifecycle; ``install`` wires them onto a hub.
Without the OpenTelemetry packages the flags still parse and enabling tracing fails with one message.
"""
