"""TEMPORARY (until the stack split lands): Mosquitto's authentication and TLS set-up."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from urbanpulse.core.mqtt_login import Identity, password_field, secret_name, tls_dir, username_of
from urbanpulse.core.secrets import ensure_secret, secrets_dir
from urbanpulse.core.settings import Settings
from urbanpulse.gateways.acl import bootstrap_config
from urbanpulse.stack.dev_tls import CertificatePair, ensure_ca, issue_server_certificate

PLUGIN_FILE = "mosquitto_dynamic_security.so"
DYNSEC_FILE = "dynamic-security.json"


def dynsec_plugin() -> Path:
    """Mosquitto's dynamic-security plugin (Debian's mosquitto package ships it)."""
    found = sorted(Path("/usr/lib").glob(f"*/{PLUGIN_FILE}"))
    return found[0] if found else Path("/usr/lib/x86_64-linux-gnu") / PLUGIN_FILE


@dataclass(frozen=True)
class BrokerSecurity:
    """Authentication (dynamic-security) and the TLS listener; None: an open broker (benches)."""

    plugin: Path
    dynsec_file: Path
    tls_port: int
    cert: CertificatePair


def security_lines(host: str, security: BrokerSecurity | None) -> list[str]:
    if security is None:
        return ["allow_anonymous true"]
    return [
        "# Every client logs in; users, roles and ACLs live in the dynamic-security file and",
        "# change at run time over $CONTROL/dynamic-security/v1 (README, Security).",
        "allow_anonymous false",
        f"plugin {security.plugin}",
        f"plugin_opt_config_file {security.dynsec_file}",
        "",
        "# MQTT over TLS beside plain MQTT.",
        f"listener {security.tls_port} {host}",
        f"certfile {security.cert.cert}",
        f"keyfile {security.cert.key}",
        "tls_version tlsv1.2",
    ]


def merged_dynsec(existing: dict[str, Any] | None, platform: dict[str, Any]) -> dict[str, Any]:
    """The platform's identities and roles as ``platform`` has them (passwords and topic roots
    of this start), and every other client, role and group (the gateways) as ``existing``."""
    if existing is None:
        return platform
    ours = {c["username"] for c in platform["clients"]}
    our_roles = {r["rolename"] for r in platform["roles"]}
    return {
        **existing,
        "clients": platform["clients"]
        + [c for c in existing.get("clients", []) if c.get("username") not in ours],
        "roles": platform["roles"]
        + [r for r in existing.get("roles", []) if r.get("rolename") not in our_roles],
        "defaultACLAccess": platform["defaultACLAccess"],
    }


def platform_passwords(settings: Settings, data_dir: Path) -> dict[str, str]:
    """Each platform identity's password: its setting, else the stack's secret (made once)."""
    passwords = {}
    for identity in Identity:
        username = username_of(settings.mqtt, identity)
        explicit = getattr(settings.mqtt, password_field(identity))
        passwords[username] = (
            explicit.get_secret_value()
            if explicit is not None
            else ensure_secret(secrets_dir(data_dir), secret_name(username))
        )
    return passwords


def server_certificate(settings: Settings, data_dir: Path, broker_dir: Path) -> CertificatePair:
    """The broker's certificate in its own directory: a copy of the configured one, or one
    signed by the stack's development CA for the broker's address."""
    mqtt = settings.mqtt
    out = CertificatePair(broker_dir / "server.crt", broker_dir / "server.key")
    if (mqtt.server_cert_file is None) != (mqtt.server_key_file is None):
        raise ValueError("set both mqtt.server_cert_file and mqtt.server_key_file, or neither")
    if mqtt.server_cert_file is not None and mqtt.server_key_file is not None:
        for source, target in ((mqtt.server_cert_file, out.cert), (mqtt.server_key_file, out.key)):
            target.write_bytes(source.expanduser().read_bytes())
            os.chmod(target, 0o600)
        return out
    ca = ensure_ca(tls_dir(data_dir))
    issue_server_certificate(ca, out, [mqtt.host, "localhost", "127.0.0.1"])
    return out


def prepare_security(
    settings: Settings, data_dir: Path, broker_dir: Path
) -> tuple[BrokerSecurity, str]:
    """Files of the broker's security; returns it and the dynamic-security document's text."""
    dynsec_file = broker_dir / DYNSEC_FILE
    existing = json.loads(dynsec_file.read_text()) if dynsec_file.is_file() else None
    platform = bootstrap_config(settings.mqtt, platform_passwords(settings, data_dir))
    document = merged_dynsec(existing, platform)
    cert = server_certificate(settings, data_dir, broker_dir)
    security = BrokerSecurity(dynsec_plugin(), dynsec_file, settings.mqtt.tls_port, cert)
    return security, json.dumps(document, indent=1)
