"""Argument types that refuse nonsensical values at parse time, and a parser whose errors are one line.

argparse's own error prints the whole usage block before the message; a user who typed one wrong
value gets the one line that names it (``--help`` has the rest).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from typing import NoReturn

_NEGATIVE_VALUE = re.compile(r"^-\d")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(text: str, kind: Callable[[str], float], what: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(_number(text, int, "a whole number"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(_number(text, int, "a whole number"))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def ratio(text: str) -> float:
    """A sampling ratio, 0..1."""
    value = _number(text, float, "a number")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"sampling ratio must be within 0..1, got {text}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def count(text: str) -> int:
    """A whole number, zero or more (the tracing flags' wording)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def boolean(value: object) -> bool:
    """A config file's true/false."""
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def pattern_list(value: object) -> list[str]:
    """A config file's regular expression (one; alternatives with ``|``), as a list like the flag's."""
    text = str(value)
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return [text]


def join_negative_values(argv: list[str]) -> list[str]:
    """``--interval -1s`` as ``--interval=-1s``: argparse takes a value starting with ``-`` and a
    digit (but not a plain negative number) for a flag, and says "expected one argument" instead
    of what is wrong with the value. Joined, the flag's own check names the problem."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith("--") and "=" not in arg and arg != "--" and _NEGATIVE_VALUE.match(nxt):
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def fail(prog: str, message: str, code: int = 2) -> int:
    """Print one line for a user's mistake and return ``code``."""
    print(f"{prog}: {message}", file=sys.stderr)
    return code
