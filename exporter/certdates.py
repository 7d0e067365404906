"""The validity dates of the web config's certificates: read, warned about, exported (a leaf module).

Python's ``ssl`` loads a certificate without looking at its dates, so an expired one is served
silently and every client fails. ``validity`` reads notBefore and notAfter of each certificate in a
PEM text from its DER (X.509: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, … } … }).
``CertificateWatch`` warns about a certificate that is expired, not yet valid or expiring within
``EXPIRY_WARNING_S``, and exports the expiry for an alert.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exporter.model.catalogue import Family, Writer

log = logging.getLogger("exporter.web_config")
# A certificate that expires within this long is warned about (at start, at each reload, and once
# when a running exporter crosses the line); its expiry is exported for alerts too.
EXPIRY_WARNING_S = 14 * 86400.0
RECHECK_S = 60.0  # how often a running exporter looks at the dates again
TLS_CERTIFICATE_EXPIRY = Family(
    "libp2p_exporter_tls_certificate_expiry_timestamp_seconds",
    "gauge",
    "When the TLS certificate of --web.config.file expires (notAfter; the earliest of a client CA bundle), "
    "in seconds since the epoch.",
    ("file",),
)

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


def _verdict(not_before: float, not_after: float, now: float) -> str:
    if now >= not_after:
        return "expired"
    if now < not_before:
        return "not_yet_valid"
    return "expiring" if not_after - now <= EXPIRY_WARNING_S else "ok"


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class CertificateWatch:
    """The dates of the serving certificate (the chain's first, the leaf) and of the client CA (the
    bundle's earliest expiry), labelled by the file as configured or ``inline cert`` / ``inline
    client_ca``. A date that cannot be read is logged and left out, never guessed, never fatal."""

    def __init__(self) -> None:
        self.dates: list[tuple[str, datetime, datetime]] = []  # (label, notBefore, notAfter)
        self._said: dict[str, str] = {}  # label -> the verdict last logged
        self._checked = 0.0

    def load(self, tls: Any, when: str) -> None:
        """Read the dates of ``tls`` (the web config's TLS settings, or None) and warn about each."""
        self.dates = []
        if tls is not None:
            for label, file, text, leaf in (
                (str(tls.cert_file) if tls.cert_file else "inline cert", tls.cert_file, tls.cert, True),
                (
                    str(tls.client_ca_file) if tls.client_ca_file else "inline client_ca",
                    tls.client_ca_file,
                    tls.client_ca,
                    False,
                ),
            ):
                self._read(label, file, text, leaf)
        self._said = {}
        self._warn(when, only_changes=False)

    def _read(self, label: str, file: Path | None, text: str, leaf: bool) -> None:
        try:
            pem = file.read_bytes() if file is not None else text.encode()
            dates = validity(pem) if pem else []
        except (OSError, CertificateDateError) as exc:
            log.warning("web config: cannot read the dates of certificate %s: %s", label, exc)
            return
        if dates and leaf:
            self.dates.append((label, *dates[0]))
        elif dates:
            self.dates.append((label, max(d[0] for d in dates), min(d[1] for d in dates)))

    def recheck(self) -> None:
        """At most once a minute: warn about a certificate whose verdict changed while running."""
        if time.monotonic() - self._checked >= RECHECK_S:
            self._warn("now", only_changes=True)

    def _warn(self, when: str, *, only_changes: bool) -> None:
        self._checked = time.monotonic()
        now = time.time()
        for label, not_before, not_after in self.dates:
            verdict = _verdict(not_before.timestamp(), not_after.timestamp(), now)
            if only_changes and self._said.get(label, "ok") == verdict:
                continue
            self._said[label] = verdict
            dates = f"valid from {_iso(not_before)} to {_iso(not_after)}"
            if verdict == "expired":
                log.warning("web config %s: certificate %s has EXPIRED (%s): TLS clients refuse it", when, label, dates)
            elif verdict == "not_yet_valid":
                log.warning(
                    "web config %s: certificate %s is NOT YET VALID (%s): TLS clients refuse it", when, label, dates
                )
            elif verdict == "expiring":
                days = (not_after.timestamp() - now) / 86400.0
                log.warning("web config %s: certificate %s expires in %.1f days (%s)", when, label, days, dates)

    def write_metrics(self, out: Writer) -> None:
        """Each certificate's notAfter (at most two series: the serving certificate, the client CA)."""
        for label, _, not_after in self.dates:
            out.gauge(TLS_CERTIFICATE_EXPIRY, not_after.timestamp(), {"file": label})
