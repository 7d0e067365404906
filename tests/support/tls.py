"""Throwaway TLS material for tests: a CA, a server certificate for 127.0.0.1/::1/localhost, a client one.

Made with ``cryptography`` in the test's temporary directory; nothing is committed, nothing outlives the test.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Material:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: list[x509.ObjectIdentifier] | None = None,
    valid: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = valid or (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_material(
    directory: Path,
    client_san: str = "scraper.example",
    server_valid: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> Material:
    """A CA and two leaf certificates signed by it, written as PEM files under ``directory``;
    ``server_valid`` (notBefore, notAfter) for the server's (default: from 5 minutes ago for a day)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("test CA", ca_key, None, ca_key, ca=True)
    server_key = _key()
    server = _cert(
        "127.0.0.1",
        server_key,
        ca.subject,
        ca_key,
        sans=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        valid=server_valid,
    )
    client_key = _key()
    client = _cert(
        "scraper",
        client_key,
        ca.subject,
        ca_key,
        sans=[x509.DNSName(client_san)],
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    m = Material(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
    m.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    m.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, m.key)
    m.client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(client_key, m.client_key)
    return m


# --web.config.file helpers: a password, its bcrypt hash (cost 4: fast), the TLS block, a file beside the certificates.
PASSWORD = b"s3cret"
TLS = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"


def hashed(password: bytes = PASSWORD) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(4)).decode()


def write(material: Material, body: str, name: str = "web.yml") -> Path:
    """A web config file in the certificates' directory, so relative cert_file names resolve."""
    path = material.ca.parent / name
    path.write_text(body)
    return path
