"""The validity dates of PEM certificates, read from their DER (a leaf module, no dependency).

Python's ``ssl`` loads a certificate without looking at its dates, so an expired one is served
silently and every client fails. ``validity`` reads notBefore and notAfter of each certificate in a
PEM text (X.509: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, … } … }).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S)


class CertificateDateError(ValueError):
    """The DER could not be walked to its validity."""


def _element(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``pos``."""
    if pos + 2 > len(der):
        raise CertificateDateError("truncated")
    tag, first = der[pos], der[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(der):
            raise CertificateDateError("bad length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise CertificateDateError("truncated")
    return tag, pos, pos + length


def _time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise CertificateDateError(f"unexpected time tag {tag:#x}")
    if not text.endswith("Z") or len(text) != 15:
        raise CertificateDateError(f"time {raw!r} is not in UTC")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)


def der_validity(der: bytes) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of one DER certificate."""
    _, start, _ = _element(der, 0)  # Certificate
    _, pos, _ = _element(der, start)  # tbsCertificate
    tag, _, end = _element(der, pos)
    if tag == 0xA0:  # [0] version
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, pos = _element(der, pos)
    tag, pos, _ = _element(der, pos)  # validity
    if tag != 0x30:
        raise CertificateDateError("no validity")
    tag, start, end = _element(der, pos)
    not_before = _time(tag, der[start:end])
    tag, start, end = _element(der, end)
    return not_before, _time(tag, der[start:end])


def validity(pem: bytes | str) -> list[tuple[datetime, datetime]]:
    """(notBefore, notAfter) of every certificate in ``pem``, in order (the leaf first in a chain)."""
    data = pem.encode() if isinstance(pem, str) else pem
    out = []
    for block in _PEM.findall(data):
        try:
            der = base64.b64decode(b"".join(block.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CertificateDateError(f"bad base64: {exc}") from None
        try:
            out.append(der_validity(der))
        except (IndexError, UnicodeDecodeError, ValueError) as exc:
            raise CertificateDateError(str(exc)) from None
    return out
