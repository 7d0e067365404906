"""What a live session is asked to do: per-session options, the targets to watch, and the recorder
interface. Shared by the WebSocket client and the live-mode configuration that builds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from exporter.protocol import introspection_pb2 as pb
from exporter.settings import Limits

DEFAULT_INTERVAL_MS = 1000
DEFAULT_RETENTION_MS = 120_000


class Recorder(Protocol):
    """Anything that takes the messages a session ingests (see exporter.sources.recording)."""

    def write(self, msg: pb.ServerMessage) -> None: ...

    def close(self) -> None: ...


@dataclass
class SessionOptions:
    """How one session behaves; every field has a sensible default for a real node."""

    interval_ms: int = DEFAULT_INTERVAL_MS
    retention_ms: int = DEFAULT_RETENTION_MS
    # Staleness: no State for this many effective intervals and the node's data stops being exported.
    stale_intervals: float = 3.0
    # Reconnect backoff: initial, cap, multiplier; jitter is a +-share of each delay.
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.2
    # A session that delivered States for this long resets the backoff.
    healthy_after_s: float = 10.0
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    # WebSocket ping period; the peer is dead when a pong is late (aiohttp closes the socket).
    heartbeat_s: float | None = 10.0
    # Nothing at all received for this long while streaming: the peer is stalled; None = derive.
    read_timeout_s: float | None = None
    max_frame_bytes: int = 16 * 1024 * 1024
    max_segment_bytes: int = Limits.max_segment_bytes
    queue_size: int = 4096
    queue_bytes: int = 64 * 1024 * 1024  # the buffer's bound in (wire) bytes, besides its length
    # One bound for the buffers of all targets together: past it the biggest buffer sheds its oldest.
    total_queue_bytes: int = 128 * 1024 * 1024
    # States queued per target before the oldest queued one is dropped (counted): a node that falls
    # behind is served from its newest State instead of working through a backlog that is stale anyway.
    queue_states: int = 3

    def effective_read_timeout(self, interval_ms: int) -> float:
        if self.read_timeout_s is not None:
            return self.read_timeout_s
        return max(5.0, 5 * interval_ms / 1000.0)


def default_name(url: str) -> str:
    """A readable node name for a URL: ``host:port``, plus the path when it is not the usual one."""
    parts = urlsplit(url)
    name = parts.netloc.rpartition("@")[2] or url  # never the credentials
    if parts.path not in ("", "/", "/introspect"):
        name += parts.path
    return name


@dataclass
class Target:
    """One node to watch: where, under which name, how often, with which extra labels."""

    url: str
    name: str = ""
    interval_ms: int = DEFAULT_INTERVAL_MS
    labels: dict[str, str] = field(default_factory=dict)
    retention_ms: int = DEFAULT_RETENTION_MS
    stale_intervals: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = default_name(self.url)
