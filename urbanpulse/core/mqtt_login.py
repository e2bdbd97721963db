"""How the platform's own MQTT clients log in: which identity, which password, TLS or not.

Mosquitto requires authentication (README, "Security").  The platform has three identities of
its own beside the gateways: the bridge (the only one that may read the readings), the publisher
of simulated and benchmark readings (a development identity, see ``gateways/broker.py``) and the
admin that manages the broker's users.  A password comes from its ``URBANPULSE_MQTT__*`` setting,
else from the local stack's secret file ``mqtt-<username>``, else connecting fails with a message
saying how to set it.
"""

from __future__ import annotations

import ssl
from enum import StrEnum
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from urbanpulse.core.secrets import read_secret, secrets_dir
from urbanpulse.core.settings import MqttSettings, Settings

DEV_CA_FILE = "ca.crt"  # under the stack's TLS directory (see tls_dir)


class Identity(StrEnum):
    BRIDGE = "bridge"
    PUBLISHER = "publisher"  # simulators, replays, benchmarks and tests' gateways
    ADMIN = "admin"


class MqttLoginError(Exception):
    """An identity has no password, or TLS has no trust anchor: say which setting is missing."""


def secret_name(username: str) -> str:
    return f"mqtt-{username.lower()}"


def tls_dir(data_dir: Path) -> Path:
    """Where the local stack keeps its development CA and the broker's certificate."""
    return data_dir / "tls"


def username_of(settings: MqttSettings, identity: Identity) -> str:
    if identity is Identity.BRIDGE:
        return settings.bridge_username
    if identity is Identity.ADMIN:
        return settings.admin_username
    return settings.username


def password_field(identity: Identity) -> str:
    return {Identity.BRIDGE: "bridge_password", Identity.ADMIN: "admin_password"}.get(
        identity, "password"
    )


def with_stack_secrets(settings: Settings) -> Settings:
    """``settings`` with each unset MQTT password taken from the stack's secret files, and the
    development CA as the trust anchor when TLS is on without one (files that do not exist
    are left out: the stack has not been started yet)."""
    mqtt_settings = settings.mqtt
    directory = secrets_dir(settings.stack.data_dir.expanduser())
    updates: dict[str, object] = {}
    for identity in Identity:
        field = password_field(identity)
        if getattr(mqtt_settings, field) is None:
            secret = read_secret(directory, secret_name(username_of(mqtt_settings, identity)))
            if secret is not None:
                updates[field] = SecretStr(secret)
    dev_ca = tls_dir(settings.stack.data_dir.expanduser()) / DEV_CA_FILE
    if mqtt_settings.ca_file is None and dev_ca.is_file():
        updates["ca_file"] = dev_ca
    if not updates:
        return settings
    return settings.model_copy(update={"mqtt": mqtt_settings.model_copy(update=updates)})


def password_of(settings: MqttSettings, identity: Identity) -> str:
    field = password_field(identity)
    secret: SecretStr | None = getattr(settings, field)
    if secret is None:
        username = username_of(settings, identity)
        raise MqttLoginError(
            f"no password for the MQTT identity {username!r}: set URBANPULSE_MQTT__"
            f"{field.upper()}, or start the local stack (`urbanpulse stack up` writes it to "
            f"<data dir>/secrets/{secret_name(username)})"
        )
    return secret.get_secret_value()


def broker_port(settings: MqttSettings) -> int:
    return settings.tls_port if settings.tls else settings.port


def new_client(
    settings: MqttSettings, identity: Identity, client_id: str, **options: object
) -> mqtt.Client:
    """A paho client (callback API 2) logged in as ``identity``, over TLS when configured."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, **options)  # type: ignore[arg-type]
    client.username_pw_set(username_of(settings, identity), password_of(settings, identity))
    if settings.tls:
        if settings.ca_file is None:
            raise MqttLoginError(
                "MQTT over TLS needs a CA to trust: set URBANPULSE_MQTT__CA_FILE, or start "
                "the local stack (it generates a development CA)"
            )
        context = ssl.create_default_context(cafile=str(settings.ca_file))
        client.tls_set_context(context)
    return client
