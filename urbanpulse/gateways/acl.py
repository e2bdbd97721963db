"""Who may do what on the broker, as Mosquitto dynamic-security documents (pure, no I/O).

The model (README, "Security"):

- Everything not allowed is denied: publishing, subscribing and receiving (the broker's default
  ACL access is deny for all three), so a client with no role can do nothing.
- A gateway may publish only to ``<topic_root>/<kind>/<sensor>/data`` and ``.../status`` of the
  sensors bound to it: one ACL entry per topic, no wildcard.  Its client id is bound to its
  name, so it cannot take another client's session, the bridge's included.
- The bridge alone may subscribe to and receive the readings, plainly or through
  ``$share/<group>/...``.
- The publisher identity of simulators, replays, benchmarks and tests may publish anything under
  the topic roots: an explicit, separate development identity (``mqtt.username``) whose name no
  gateway can take.  A production broker need not have it (README, "Security"), and should not:
  its client id cannot be bound.  Dynamic security binds a client to one exact client id or to
  none (mosquitto.org/documentation/dynamic-security, "Client ID"; the plugin compares with
  strcmp), and its ACLs are about topics only; the broker-wide ``clientid_prefixes`` is
  deprecated and applies to every client (mosquitto.conf(5)).  The publisher connects with many
  client ids at once, so it stays unbound and could connect with the bridge's client id, which
  takes the bridge's session over (tests/e2e/test_mqtt_security.py, the strict xfail).
- The admin identity may only use the dynamic-security control topics.

Platform roles cover the configured topic root and every ``<name>/v1`` root of
``Settings.isolated`` (tests and benchmarks run many isolated bridges on one broker).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from urbanpulse.core.catalogue import SENSOR_ID_PATTERN, SENSOR_ID_SCHEMA_PATTERN
from urbanpulse.core.settings import MqttSettings

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
# Names of gateways follow the sensor id rule, deliberately: both must be plain ids in MQTT (no
# '/', '+', '#', '$', spaces or control characters, which would be wildcards or reserved topics in
# an ACL or a client id) and in URL path segments.
GATEWAY_ID = SENSOR_ID_PATTERN
GATEWAY_ID_SCHEMA_PATTERN = SENSOR_ID_SCHEMA_PATTERN
ISOLATED_ROOT = "+/v1"  # Settings.isolated(name) gives topic_root f"{name}/v1"
# dynamic-security's own hashing parameters (PBKDF2-SHA512, 12-byte salt, 101 iterations, as
# `mosquitto_ctrl dynsec init` writes them): the broker checks these hashes, the platform only
# writes the first file.
_SALT_BYTES = 12
_ITERATIONS = 101

BRIDGE_ROLE = "urbanpulse-bridge"
PUBLISHER_ROLE = "urbanpulse-publisher"
ADMIN_ROLE = "urbanpulse-admin"


class IdentityError(ValueError):
    """A gateway name that could act as a wildcard, a reserved topic or a platform identity."""


@dataclass(frozen=True)
class Acl:
    acltype: str
    topic: str
    allow: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype, "topic": self.topic, "allow": self.allow}


@dataclass(frozen=True)
class BoundSensor:
    sensor_id: str
    kind: str


def check_gateway_id(gateway_id: str, settings: MqttSettings) -> str:
    """``gateway_id`` if a gateway may have it; an IdentityError saying why not otherwise."""
    if not GATEWAY_ID.fullmatch(gateway_id):
        raise IdentityError(
            f"gateway id {gateway_id[:80]!r} must be 1-64 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit (no MQTT wildcards '+', '#', no '/', no '$')"
        )
    reserved = {settings.username, settings.bridge_username, settings.admin_username}
    if gateway_id.lower() in {name.lower() for name in reserved}:
        raise IdentityError(f"{gateway_id!r} is one of the platform's own MQTT identities")
    if gateway_id.lower().startswith(settings.bridge_client_id.lower()):
        raise IdentityError(
            f"{gateway_id!r} starts with the bridge's client id {settings.bridge_client_id!r}, "
            "which only the bridge may use"
        )
    return gateway_id


def gateway_role(gateway_id: str) -> str:
    return f"gateway-{gateway_id}"


def sensor_topics(topic_root: str, sensor: BoundSensor) -> list[str]:
    base = f"{topic_root}/{sensor.kind}/{sensor.sensor_id}"
    return [f"{base}/data", f"{base}/status"]


def gateway_acls(topic_root: str, sensors: Iterable[BoundSensor]) -> list[Acl]:
    """The publish ACL entries of a gateway with these bound sensors: two exact topics each."""
    return [
        Acl("publishClientSend", topic)
        for sensor in sensors
        for topic in sensor_topics(topic_root, sensor)
    ]


def _roots(settings: MqttSettings) -> list[str]:
    return list(dict.fromkeys([settings.topic_root, ISOLATED_ROOT]))


def bridge_acls(settings: MqttSettings) -> list[Acl]:
    acls: list[Acl] = []
    for root in _roots(settings):
        acls += [
            Acl("subscribePattern", f"{root}/#"),
            Acl("subscribePattern", f"$share/+/{root}/#"),
            Acl("publishClientReceive", f"{root}/#"),
        ]
    # What a health check may read (compose's probes the broker as the bridge).
    uptime = "$SYS/broker/uptime"
    return [*acls, Acl("subscribeLiteral", uptime), Acl("publishClientReceive", uptime)]


def publisher_acls(settings: MqttSettings) -> list[Acl]:
    # Everything under the roots, malformed topics included: the hostile-input tests publish
    # what a broken gateway might, to prove the bridge dead-letters it.
    return [Acl("publishClientSend", f"{root}/#") for root in _roots(settings)]


def admin_acls() -> list[Acl]:
    control = "$CONTROL/dynamic-security/#"
    return [
        Acl("publishClientSend", control),
        Acl("publishClientReceive", control),
        Acl("subscribePattern", control),
    ]


def password_hash(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """A client's password fields as dynamic-security stores them."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
    }


def bootstrap_config(settings: MqttSettings, passwords: dict[str, str]) -> dict[str, Any]:
    """The platform's identities and roles as a dynamic-security document, deny by default.
    ``passwords`` maps platform usernames to passwords; an identity without one is left out
    (a production broker may have no publisher of simulated readings)."""
    identities = [
        (username, role, acls)
        for username, role, acls in [
            (settings.admin_username, ADMIN_ROLE, admin_acls()),
            (settings.bridge_username, BRIDGE_ROLE, bridge_acls(settings)),
            (settings.username, PUBLISHER_ROLE, publisher_acls(settings)),
        ]
        if username in passwords
    ]
    return {
        "clients": [
            {
                "username": username,
                "textName": f"UrbanPulse {role.removeprefix('urbanpulse-')}",
                **password_hash(passwords[username]),
                "roles": [{"rolename": role}],
            }
            for username, role, _acls in identities
        ],
        "roles": [
            {"rolename": role, "acls": [acl.to_json() for acl in acls]}
            for _username, role, acls in identities
        ],
        "groups": [],
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


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
