"""Remote text made safe for one log line or one label value, and URLs without their credentials.

A peer controls the strings it sends (error texts, Runtime fields, a /probe target), so nothing
from it reaches a log line or a label raw: no line breaks or control characters, bounded length."""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit, urlunsplit

LOG_TEXT_MAX = 200
LABEL_TEXT_MAX = 128


def safe_text(text: str, limit: int = LOG_TEXT_MAX) -> str:
    """``text`` for a log line: control, format and separator characters escaped (``\\n``,
    ``\\x00``, ``\\u2028``), cut to ``limit`` characters with an ellipsis mark."""
    cut = len(text) > limit
    text = text[:limit]
    if text.isprintable():
        return text + ("…" if cut else "")
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out) + ("…" if cut else "")


def clean_label(text: str, limit: int = LABEL_TEXT_MAX) -> str:
    """``text`` for a label value: unprintable characters (control, NUL, U+2028...) replaced by
    ``?`` and the value cut to ``limit`` characters."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() and unicodedata.category(ch)[0] != "C" else "?" for ch in text)


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``; the rest unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return safe_text(url)
    if "@" not in parts.netloc:
        return safe_text(url)
    host = parts.netloc.rsplit("@", 1)[1]
    return safe_text(urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment)))


def has_userinfo(url: str) -> bool:
    """True when ``url`` carries ``user[:password]@`` in its authority."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False
