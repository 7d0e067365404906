"""Replaying a capture file through the pipeline, at recorded pace or as fast as possible."""

from __future__ import annotations

import asyncio
import logging
import os

from exporter.pipeline.hub import Hub
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import DEFAULT_MAX_SEGMENT, SegmentError
from exporter.sources.capture import iter_capture

log = logging.getLogger(__name__)


def message_ts(msg: pb.ServerMessage) -> int:
    kind = msg.WhichOneof("payload")
    if kind == "state":
        return msg.state.instant_ts
    if kind == "event":
        return msg.event.ts
    return 0


async def replay(
    hub: Hub,
    path: str | os.PathLike[str],
    *,
    node: str,
    speed: float = 1.0,
    loop: bool = False,
    max_passes: int | None = None,
    max_segment: int = DEFAULT_MAX_SEGMENT,
) -> int:
    """Feed the file's messages to ``hub`` as node ``node``; returns how many passes were made.

    At ``speed`` N the gaps between message timestamps are divided by N; 0 means no waiting. With
    ``loop`` the file starts again at the end. The timestamps of a looped pass are shifted forward
    so that snapshots keep increasing and counters keep counting instead of being dropped.
    """
    passes = 0
    offset = 0
    while True:
        first_ts = last_ts = 0
        prev_ts = 0
        for item in iter_capture(path, max_segment=max_segment):
            if isinstance(item, SegmentError):
                hub.errors(node, [item])
                continue
            ts = message_ts(item)
            if ts and offset:
                _shift(item, offset)
                ts += offset
            if ts:
                first_ts = first_ts or ts
                if speed > 0 and prev_ts and ts > prev_ts:
                    await asyncio.sleep(min((ts - prev_ts) / 1000.0 / speed, 60.0))
                prev_ts = max(prev_ts, ts)
                last_ts = max(last_ts, ts)
            hub.ingest(node, item)
            if speed == 0 and hub.nodes[node].messages.total() % 200 == 0:
                await asyncio.sleep(0)
        passes += 1
        if not loop or not last_ts or (max_passes is not None and passes >= max_passes):
            break
        offset += last_ts - first_ts + 1000
        # The file's cumulative counters start over: a new baseline, but no node restart to count.
        state = hub.node(node)
        state.pending_restart = state.rewound = True
    return passes


def _shift(msg: pb.ServerMessage, offset: int) -> None:
    kind = msg.WhichOneof("payload")
    if kind == "event":
        msg.event.ts += offset
    elif kind == "state":
        st = msg.state
        st.instant_ts += offset
        if st.start_ts:
            st.start_ts += offset
        for c in st.subsystems.connections:
            _shift_timeline(c.timeline, offset, ("open_ts", "upgraded_ts", "close_ts"))
            for s in c.streams.streams:
                _shift_timeline(s.timeline, offset, ("open_ts", "close_ts"))


def _shift_timeline(timeline: object, offset: int, fields: tuple[str, ...]) -> None:
    for name in fields:
        value = getattr(timeline, name)
        if value:
            setattr(timeline, name, value + offset)
