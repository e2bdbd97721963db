"""The broker's users, changed at run time: dynamic-security commands sent as the admin identity.

Mosquitto's dynamic-security plugin takes JSON commands on ``$CONTROL/dynamic-security/v1`` and
answers on ``.../response``; it applies them at once (a deleted client is disconnected) and saves
them to its file, so no change needs a broker restart or a reload signal.  Changes are rare (an
operator adds a gateway), so each batch of commands uses a connection of its own.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from urbanpulse.core.mqtt_login import Identity, broker_port, new_client
from urbanpulse.core.settings import MqttSettings
from urbanpulse.core.untrusted import preview
from urbanpulse.gateways.acl import CONTROL_TOPIC, Acl, gateway_role

log = logging.getLogger(__name__)

RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
# dynamic-security's answer ("Client not found", "Role not found") when the thing to delete is
# already gone: a delete that is repeated (say, after a half-done revocation) has succeeded.
_ALREADY_GONE = "not found"


class BrokerAdminError(Exception):
    """The broker could not be reached, or refused a command (the message says which)."""


def execute(
    settings: MqttSettings, commands: Sequence[dict[str, Any]], timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """Send ``commands`` in one control message and return the broker's answers, in order.

    Raises BrokerAdminError when the broker is unreachable, refuses the admin identity, does
    not answer within ``timeout_s``, or answers any command with an error.
    """
    correlation = secrets.token_hex(8)
    tagged = [
        {**command, "correlationData": f"{correlation}-{i}"} for i, command in enumerate(commands)
    ]
    answered = threading.Event()
    connected = threading.Event()
    failure: list[str] = []
    responses: list[dict[str, Any]] = []

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            failure.append(f"the broker refused the admin identity: {reason}")
            answered.set()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def on_subscribe(client: mqtt.Client, _u: Any, _m: int, reasons: list[Any], _p: Any) -> None:
        if any(reason.is_failure for reason in reasons):
            failure.append(f"the broker refused the admin's subscription: {reasons}")
            answered.set()
            return
        connected.set()
        client.publish(CONTROL_TOPIC, orjson.dumps({"commands": tagged}), qos=1)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            document = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            return
        mine = [
            r
            for r in document.get("responses", [])
            if str(r.get("correlationData", "")).startswith(f"{correlation}-")
        ]
        responses.extend(mine)
        if len(responses) >= len(tagged):
            answered.set()

    client = new_client(
        settings, Identity.ADMIN, client_id=f"{settings.admin_username}-{correlation}"
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(settings.host, broker_port(settings), keepalive=30)
    except OSError as exc:
        raise BrokerAdminError(
            f"cannot reach the MQTT broker at {settings.host}:{broker_port(settings)}: {exc}"
        ) from None
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            stage = "answer" if connected.is_set() else "accept the admin identity"
            raise BrokerAdminError(f"the MQTT broker did not {stage} within {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
    if failure:
        raise BrokerAdminError(failure[0])
    ordered = sorted(responses, key=lambda r: int(str(r["correlationData"]).rsplit("-", 1)[1]))
    for response in ordered:
        error = response.get("error")
        repeated_delete = str(response.get("command", "")).startswith("delete") and (
            _ALREADY_GONE in str(error).lower()
        )
        if error and not repeated_delete:
            raise BrokerAdminError(
                f"the broker refused {response.get('command')}: {preview(error, 200)}"
            )
    return ordered


def create_gateway_commands(
    gateway_id: str, name: str | None, password: str
) -> list[dict[str, Any]]:
    """A client named ``gateway_id`` (and bound to that client id) with an empty role of its own."""
    role = gateway_role(gateway_id)
    return [
        {"command": "createRole", "rolename": role},
        {
            "command": "createClient",
            "username": gateway_id,
            "password": password,
            "clientid": gateway_id,
            "textname": name or gateway_id,
            "roles": [{"rolename": role}],
        },
    ]


def delete_gateway_commands(gateway_id: str) -> list[dict[str, Any]]:
    """Delete the client (the broker disconnects it at once) and its role."""
    return [
        {"command": "deleteClient", "username": gateway_id},
        {"command": "deleteRole", "rolename": gateway_role(gateway_id)},
    ]


def add_acl_commands(gateway_id: str, acls: Sequence[Acl]) -> list[dict[str, Any]]:
    role = gateway_role(gateway_id)
    return [{"command": "addRoleACL", "rolename": role, **acl.to_json()} for acl in acls]


def remove_acl_commands(gateway_id: str, acls: Sequence[Acl]) -> list[dict[str, Any]]:
    role = gateway_role(gateway_id)
    return [
        {"command": "removeRoleACL", "rolename": role, "acltype": acl.acltype, "topic": acl.topic}
        for acl in acls
    ]
