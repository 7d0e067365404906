"""Logging the way Prometheus exporters log: ``--log.level`` and ``--log.format logfmt|json``.

Every line is one record: the formatter escapes the whole message, so text a remote peer controls
(a node's name, a URL, an error from the wire) cannot break a line, forge one, or smuggle terminal
control characters, whatever the call site forgot. ``RateLimitedLog`` keeps a warning that repeats
(a target reconnecting every few seconds) to its first occurrence plus one summary per interval.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
FORMATS = ("logfmt", "json")

# logfmt escapes for characters that would end or confuse a line; everything else unprintable is \\uXXXX.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with quotes, backslashes, line breaks and every unprintable character escaped."""
    if text.isprintable() and '"' not in text and "\\" not in text:  # the common case, at C speed
        return text
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:  # C0/C1 controls, U+2028/2029, other separators and format characters
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def logfmt_value(value: object) -> str:
    """A logfmt value: bare when it is a plain word, else double-quoted with escapes."""
    text = str(value)
    if text and text.isprintable() and not any(ch in text for ch in ' ="\\'):
        return text
    return f'"{escape(text)}"'


def _timestamp(created: float) -> str:
    whole = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", whole) + f".{int(created % 1 * 1000):03d}Z"


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower())


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": _timestamp(record.created),
        "level": _level(record),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        for key, value in extra.items():
            fields.setdefault(str(key), value)
    if record.exc_info and record.exc_info[1] is not None:
        fields["err"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        fields["stack"] = logging.Formatter().formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg="..." key=value``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{_key(k)}={logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``ensure_ascii`` escapes everything outside ASCII, line separators included."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({k: v if isinstance(v, (int, float, bool)) else str(v) for k, v in _fields(record).items()})


def _key(key: str) -> str:
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_.-") else "_" for ch in key)
    return cleaned or "_"


def add_format_flag(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=FORMATS,
        help="log line format: logfmt (ts=... level=... msg=...) or json (default logfmt)",
    )


def configure(level: str = "info", fmt: str = "logfmt", stream: IO[str] | None = None) -> logging.Handler:
    """Route every logger through one handler on stderr in the chosen format; returns that handler."""
    if level not in LEVELS:
        raise ValueError(f"--log.level: {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"--log.format: {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LogfmtFormatter() if fmt == "logfmt" else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    return handler


class RateLimitedLog:
    """Per key: the first message is logged; repeats within ``interval`` are counted, then summarised once.

    At the first repeat after the interval, one line says how many were suppressed, and that repeat
    is logged as a new first. ``flush`` reports what is still pending (at shutdown). Keys are bounded
    (least recently used dropped first), so a remote peer choosing keys cannot grow this.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 300.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[str, list[Any]] = OrderedDict()  # key -> [window start, suppressed, level]
        self._lock = threading.Lock()  # callers may decode in worker threads

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log now (True) or count as suppressed (False)."""
        with self._lock:
            return self._log(level, key, msg, args)

    def _log(self, level: int, key: str, msg: str, args: tuple[object, ...]) -> bool:
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None:
            self._seen.move_to_end(key)
            if now - entry[0] < self.interval:
                entry[1] += 1
                return False
            self._summarise(key, entry, now)
        self.logger.log(level, msg, *args)
        self._seen[key] = [now, 0, level]
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            old_key, old = self._seen.popitem(last=False)
            self._summarise(old_key, old, now)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def _summarise(self, key: str, entry: list[Any], now: float) -> None:
        if entry[1]:
            self.logger.log(
                entry[2], "%s: %d more like this suppressed in the last %.0fs", key, entry[1], now - entry[0]
            )
            entry[1] = 0

    def forget(self, key: str) -> None:
        """The condition ended (the target reconnected): report what was suppressed and start afresh."""
        with self._lock:
            entry = self._seen.pop(key, None)
            if entry is not None:
                self._summarise(key, entry, self._clock())

    def flush(self) -> None:
        with self._lock:
            now = self._clock()
            for key, entry in self._seen.items():
                self._summarise(key, entry, now)
