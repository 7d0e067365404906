"""Defaults shared by the command line, the live-mode config file and the code they configure.

One place for each, so a flag's help text, the config file's fallback and the library default
cannot drift apart. Nothing here imports anything above the protocol layer.
"""

from __future__ import annotations

import logging

from exporter.protocol.framing import DEFAULT_MAX_SEGMENT

# The exporter range of the Prometheus default port allocations (9100-9999) is fully allocated; see docs.
LISTEN_ADDRESS = "127.0.0.1:9797"
TELEMETRY_PATH = "/metrics"
# Label values beyond the allow-lists: protocol ids, and security, muxer and event type names.
PROTOCOL_CAP = 32
OTHER_CAP = 8
# Peerstore agents: distinct (implementation, major.minor) pairs beyond which the version is `other`.
AGENT_VERSION_CAP = 64
# --log.level names and what they mean to the logging module.
LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
LOG_LEVEL = "info"
MAX_SEGMENT_BYTES = DEFAULT_MAX_SEGMENT

__all__ = [
    "AGENT_VERSION_CAP",
    "LISTEN_ADDRESS",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "MAX_SEGMENT_BYTES",
    "OTHER_CAP",
    "PROTOCOL_CAP",
    "TELEMETRY_PATH",
]
