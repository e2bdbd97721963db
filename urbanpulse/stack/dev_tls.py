"""The local stack's development CA and server certificates (never committed, never shipped).

``urbanpulse stack up`` creates a CA once per data directory (``<data dir>/tls/ca.crt``, its key
0600 beside it) and signs a certificate for each server with it, for the addresses clients use.
Clients trust ``ca.crt``; a deployment puts real certificates in place through settings instead
(README, "Security").
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from urbanpulse.core.mqtt_login import DEV_CA_FILE

CA_VALID = dt.timedelta(days=3650)
SERVER_VALID = dt.timedelta(days=825)  # the longest that TLS clients accept for a leaf
_PUBLIC = 0o644
_PRIVATE = 0o600


@dataclass(frozen=True)
class CertificatePair:
    cert: Path
    key: Path


def ca_pair(tls_dir: Path) -> CertificatePair:
    return CertificatePair(tls_dir / DEV_CA_FILE, tls_dir / "ca.key")


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "UrbanPulse local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_ca(tls_dir: Path) -> CertificatePair:
    """The development CA of this data directory, created on first use."""
    pair = ca_pair(tls_dir)
    if pair.cert.is_file() and pair.key.is_file():
        return pair
    # Private like the rest of the stack's data; clients of the same user read ca.crt.
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name("UrbanPulse development CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(pair.key, _key_pem(key), _PRIVATE)
    _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM), _PUBLIC)
    return pair


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_server_certificate(ca: CertificatePair, out: CertificatePair, hosts: list[str]) -> None:
    """A server certificate for ``hosts`` (names or IP addresses) signed by ``ca``; the key 0600."""
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not the development CA's EC key")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names = list(dict.fromkeys(hosts))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + SERVER_VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(out.key, _key_pem(key), _PRIVATE)
    _write(out.cert, cert.public_bytes(serialization.Encoding.PEM), _PRIVATE)
