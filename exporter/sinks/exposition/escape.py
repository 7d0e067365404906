"""Escaping and number formatting of the exposition formats, as prometheus_client 0.26 writes them.

Everything here runs once per distinct name or label set (the results are cached by the block
writer), except ``go_float``, which runs once per sample and so has a short fast path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

# The legacy name patterns. ``$`` (not ``\Z``) on purpose: prometheus_client's checks accept a name
# with one trailing newline as valid and print it unchanged, and we print what it prints.
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABEL = re.compile(r"^__.*$")

_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def go_float(value: float) -> str:
    """A sample value as Go's exposition writes it (``floatToGoString``): +Inf, -Inf, NaN, 1e+06 style."""
    r = repr(float(value))
    # Every repr ends in a digit except inf/nan, and only reprs of 9+ characters can have the decimal
    # point past position 6 (where Go switches to an exponent and Python does not).
    if len(r) < 9 and r[-1] <= "9":
        return r
    return _go_float_slow(r, float(value))


def _go_float_slow(r: str, value: float) -> str:
    special = _SPECIAL.get(r)
    if special is not None:
        return special
    if math.isnan(value):
        return "NaN"
    dot = r.find(".")
    if value > 0 and dot > 6:
        digits = (r[0] + "." + r[1:dot] + r[dot + 1 :]).rstrip("0.")
        return f"{digits}e+{dot - 1:02d}"
    return r


def _underscored(name: str, colon: bool) -> str:
    """Each character outside the legacy alphabet (a leading digit included) replaced by ``_``."""
    out = []
    for i, ch in enumerate(name):
        ok = ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ch == "_" or ("0" <= ch <= "9" and i > 0)
        out.append(ch if ok or (colon and ch == ":") else "_")
    return "".join(out)


def metric_name(name: str) -> str:
    """A family or text-format sample name: unchanged when legacy-valid, else underscored."""
    if not name or _METRIC_NAME.match(name):
        return name
    return _underscored(name, colon=True)


def om_sample_name(name: str) -> str:
    """An OpenMetrics sample name: prometheus_client underscores it with the label alphabet (no ``:``)."""
    return _underscored(name, colon=False)


def label_name(name: str) -> str:
    if not name or (_LABEL_NAME.match(name) and not _RESERVED_LABEL.match(name)):
        return name
    return _underscored(name, colon=False)


def label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def help_text(doc: str) -> str:
    """HELP in the 0.0.4 text format: backslash and newline escaped (quotes left alone)."""
    return doc.replace("\\", "\\\\").replace("\n", "\\n")


def help_om(doc: str) -> str:
    """HELP in OpenMetrics: backslash, newline and double quote escaped."""
    return label_value(doc)


# Escaped ``name="value"`` pairs, shared by all nodes: a label value is escaped once, however many
# series and nodes carry it. Bounded: dropped wholesale when it grows past the cap.
_PAIRS: dict[tuple[str, str], str] = {}
PAIRS_CAP = 50_000


def label_pair(name: str, value: str) -> str:
    key = (name, value)
    pair = _PAIRS.get(key)
    if pair is None:
        if len(_PAIRS) >= PAIRS_CAP:
            _PAIRS.clear()
        pair = _PAIRS[key] = f'{label_name(name)}="{label_value(value)}"'
    return pair


def label_string(labels: Mapping[str, str]) -> str:
    """``{a="x",b="y"}`` sorted by label name, or nothing when there are no labels."""
    if not labels:
        return ""
    return "{" + ",".join([label_pair(k, v) for k, v in sorted(labels.items())]) + "}"
