"""Client commands and server responses (docs/protocol.md section 3)."""

from __future__ import annotations

from exporter.protocol import introspection_pb2 as pb

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source


def command(
    cmd_id: int,
    cmd: Command,
    source: Source = pb.ClientCommand.STATE,
    *,
    interval_ms: int | None = None,
    retention_ms: int | None = None,
) -> bytes:
    """A bare ClientCommand, as the client sends it (no segment header)."""
    msg = pb.ClientCommand(id=cmd_id, command=cmd, source=source)
    msg.version.version = 1
    if interval_ms is not None or retention_ms is not None:
        msg.config.state_snapshot_interval_ms = interval_ms or 0
        msg.config.retention_period_ms = retention_ms or 0
    return msg.SerializeToString()


def response(
    cmd_id: int,
    *,
    ok: bool = True,
    error: str = "",
    config: pb.Configuration | None = None,
) -> pb.ServerMessage:
    """A ServerMessage carrying a CommandResponse."""
    msg = pb.ServerMessage()
    msg.version.version = 1
    msg.response.id = cmd_id
    msg.response.result = pb.CommandResponse.OK if ok else pb.CommandResponse.ERR
    if error:
        msg.response.error = error
    if config is not None:
        msg.response.effective_config.CopyFrom(config)
    return msg
