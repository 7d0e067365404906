"""OpenTelemetry spans from snapshots: connections, streams and DHT queries (``libp2p-exporter[otel]``).

``config`` reads flags and the OTEL_* environment; ``spans`` is the span model (what a snapshot diff
starts and ends); ``otlp`` the span record and its OTLP protobuf; ``export`` the bounded queue, its
thread and the OTLP/HTTP and gRPC transports; ``metrics`` counts what became of each span; ``sink``
is the hub listener and its lifecycle; ``pubsub`` the message traces; ``install`` wires them onto a hub.
Without the OpenTelemetry packages the flags still parse and enabling tracing fails with one message.
"""
