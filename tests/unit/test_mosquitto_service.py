"""The broker's security files as the local stack writes them before a start (no server runs):
configuration, the platform's identities, the development CA and real certificates."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from urbanpulse.core.settings import Settings
from urbanpulse.gateways.acl import password_hash
from urbanpulse.stack._layout import Layout
from urbanpulse.stack.dev_tls import CertificatePair, ensure_ca, issue_server_certificate
from urbanpulse.stack.services.base import StackContext
from urbanpulse.stack.services.mosquitto import Mosquitto


def prepared(tmp_path: Path, **mqtt: object) -> tuple[Mosquitto, Settings]:
    base = Settings()
    settings = base.model_copy(
        update={
            "mqtt": base.mqtt.model_copy(update=mqtt),
            "stack": base.stack.model_copy(update={"data_dir": tmp_path}),
        }
    )
    broker = Mosquitto(StackContext(settings, Layout(tmp_path), tmp_path / "cache", False))
    broker.prepare()
    return broker, settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_broker_requires_a_login_and_serves_tls(tmp_path: Path) -> None:
    _broker, settings = prepared(tmp_path)
    conf = (tmp_path / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf and "allow_anonymous true" not in conf
    assert any(line.startswith("plugin ") and "dynamic_security" in line for line in conf)
    assert f"listener {settings.mqtt.tls_port} {settings.mqtt.host}" in conf
    assert f"certfile {tmp_path}/mosquitto/server.crt" in conf


def test_platform_passwords_are_generated_once_and_stored_hashed(tmp_path: Path) -> None:
    prepared(tmp_path)
    dynsec = tmp_path / "mosquitto" / "dynamic-security.json"
    first = json.loads(dynsec.read_text())
    secret = tmp_path / "secrets" / "mqtt-urbanpulse-bridge"
    password = secret.read_text().strip()
    assert mode(secret) == 0o600 and mode(dynsec) == 0o600
    [bridge] = [c for c in first["clients"] if c["username"] == "urbanpulse-bridge"]
    assert password not in dynsec.read_text()
    salt = base64.b64decode(bridge["salt"])
    assert password_hash(password, salt)["password"] == bridge["password"]
    prepared(tmp_path)  # a restart: same secret, the gateways (none here) kept
    assert secret.read_text().strip() == password


def test_the_development_ca_signs_the_brokers_certificate(tmp_path: Path) -> None:
    prepared(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "tls" / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "mosquitto" / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert mode(tmp_path / "tls" / "ca.key") == 0o600
    assert mode(tmp_path / "tls") == 0o700
    assert mode(tmp_path / "mosquitto" / "server.key") == 0o600
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_real_certificates_are_used_instead(tmp_path: Path) -> None:
    theirs = tmp_path / "city-pki"
    ca = ensure_ca(theirs)
    real = CertificatePair(theirs / "mqtt.example.crt", theirs / "mqtt.example.key")
    issue_server_certificate(ca, real, ["mqtt.city.example"])
    data = tmp_path / "stack"
    prepared(data, server_cert_file=real.cert, server_key_file=real.key)
    assert (data / "mosquitto" / "server.crt").read_bytes() == real.cert.read_bytes()
    assert (data / "mosquitto" / "server.key").read_bytes() == real.key.read_bytes()
    assert mode(data / "mosquitto" / "server.key") == 0o600
    assert not (data / "tls").exists()  # no development CA is made
