"""exporter.certdates reads notBefore/notAfter from PEM as cryptography wrote them (UTCTime before
2050, GeneralizedTime from 2050, RFC 5280), and refuses what it cannot walk without guessing."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.certdates import CertificateDateError, validity

UTC = datetime.timezone.utc


def pem(not_before: datetime.datetime, not_after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (datetime.datetime(1999, 6, 1, tzinfo=UTC), datetime.datetime(2061, 3, 4, 5, 6, 7, tzinfo=UTC)),
    ],
)
def test_dates_as_written(not_before: datetime.datetime, not_after: datetime.datetime) -> None:
    assert validity(pem(not_before, not_after)) == [(not_before, not_after)]


def test_a_chain_in_order_and_text_around_it() -> None:
    a = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    b = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    c = datetime.datetime(2035, 1, 1, tzinfo=UTC)
    text = b"subject=leaf\n" + pem(a, b) + b"\n" + pem(a, c)
    assert validity(text) == [(a, b), (a, c)]


def test_damage_is_an_error_not_a_date() -> None:
    good = pem(datetime.datetime(2025, 1, 1, tzinfo=UTC), datetime.datetime(2030, 1, 1, tzinfo=UTC))
    body = good.split(b"\n")
    with pytest.raises(CertificateDateError):
        validity(b"\n".join([body[0], body[1][:20], body[-2]]))  # truncated DER
    assert validity(b"no certificate here") == []
