"""The introspection wire protocol: generated messages, segment framing and command helpers."""

from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import (
    DEFAULT_MAX_SEGMENT,
    PROTOCOL_VERSION,
    DecodeResult,
    SegmentError,
    decode_segments,
    encode_segment,
    fnv1a32,
)

__all__ = [
    "DEFAULT_MAX_SEGMENT",
    "PROTOCOL_VERSION",
    "DecodeResult",
    "SegmentError",
    "decode_segments",
    "encode_segment",
    "fnv1a32",
    "pb",
]
