"""Who may do what on the broker: gateway names, ACL entries and the dynamic-security file."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from urbanpulse.core.settings import MqttSettings, Settings
from urbanpulse.gateways.acl import (
    BoundSensor,
    IdentityError,
    bootstrap_config,
    bridge_acls,
    check_gateway_id,
    gateway_acls,
    merged_dynsec,
    password_hash,
    publisher_acls,
)

SETTINGS = MqttSettings()


@pytest.mark.parametrize(
    "name",
    [
        "gw/1",  # a topic level separator
        "gw+",  # single-level wildcard
        "gw#",  # multi-level wildcard
        "$SYS",  # reserved topics
        "#",
        "+",
        "gw 1",
        "gw\n",  # a trailing newline must not pass (full match)
        "",
        "g" * 65,
        "-gw",
    ],
)
def test_wildcards_separators_and_reserved_characters_are_refused(name: str) -> None:
    with pytest.raises(IdentityError):
        check_gateway_id(name, SETTINGS)


@pytest.mark.parametrize(
    "name",
    [
        "urbanpulse-bridge",  # the bridge's identity
        "urbanpulse-bridge-1",  # the bridge's client-id prefix
        "URBANPULSE-BRIDGE-2",
        "urbanpulse-simulator",  # the development publisher
        "urbanpulse-admin",
    ],
)
def test_the_platform_identities_and_the_bridge_prefix_are_reserved(name: str) -> None:
    with pytest.raises(IdentityError):
        check_gateway_id(name, SETTINGS)


def test_ordinary_gateway_names_pass() -> None:
    assert check_gateway_id("hcm-q1-gw.07:a_b", SETTINGS) == "hcm-q1-gw.07:a_b"


def test_a_gateway_gets_exactly_the_data_and_status_topics_of_its_sensors() -> None:
    acls = gateway_acls(
        "urbanpulse/v1", [BoundSensor("air-1", "air"), BoundSensor("bin-9", "waste_bin")]
    )
    assert [(a.acltype, a.topic, a.allow) for a in acls] == [
        ("publishClientSend", "urbanpulse/v1/air/air-1/data", True),
        ("publishClientSend", "urbanpulse/v1/air/air-1/status", True),
        ("publishClientSend", "urbanpulse/v1/waste_bin/bin-9/data", True),
        ("publishClientSend", "urbanpulse/v1/waste_bin/bin-9/status", True),
    ]


def test_platform_roles_cover_isolated_topic_roots() -> None:
    isolated = Settings().isolated("t0123456789").mqtt
    topics = {a.topic for a in bridge_acls(isolated)}
    # Settings.isolated gives "<name>/v1": the "+/v1" entries cover every such name.
    assert {"+/v1/#", "$share/+/+/v1/#"} <= topics
    assert {a.topic for a in publisher_acls(isolated)} >= {"+/v1/#"}
    assert all(a.acltype == "publishClientSend" for a in publisher_acls(isolated))


def test_the_broker_denies_by_default() -> None:
    passwords = {
        SETTINGS.username: "p",
        SETTINGS.bridge_username: "b",
        SETTINGS.admin_username: "a",
    }
    config = bootstrap_config(SETTINGS, passwords)
    assert config["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    assert {c["username"] for c in config["clients"]} == set(passwords)


@pytest.mark.skipif(shutil.which("mosquitto_ctrl") is None, reason="mosquitto_ctrl not installed")
def test_password_hashes_are_those_mosquitto_ctrl_writes(tmp_path: Path) -> None:
    # mosquitto_ctrl (Mosquitto's own tool) writes a file with a hashed password; hashing the
    # same password with its salt must give its hash.
    path = tmp_path / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(path), "admin", "a-throwaway-password"],
        check=True,
        capture_output=True,
    )
    [client] = json.loads(path.read_text())["clients"]

    ours = password_hash("a-throwaway-password", base64.b64decode(client["salt"]))
    assert ours == {k: client[k] for k in ("password", "salt", "iterations")}


def test_a_restart_rewrites_the_platform_identities_and_keeps_the_gateways() -> None:
    passwords = {
        SETTINGS.username: "p",
        SETTINGS.bridge_username: "b",
        SETTINGS.admin_username: "a",
    }
    first = bootstrap_config(SETTINGS, passwords)
    gateway = {"username": "gw-1", "clientid": "gw-1", "roles": [{"rolename": "gateway-gw-1"}]}
    role = {"rolename": "gateway-gw-1", "acls": [{"acltype": "publishClientSend", "topic": "t"}]}
    on_disk = {**first, "clients": [*first["clients"], gateway], "roles": [*first["roles"], role]}
    renewed = bootstrap_config(SETTINGS, {**passwords, SETTINGS.bridge_username: "new"})
    merged = merged_dynsec(on_disk, renewed)
    assert gateway in merged["clients"] and role in merged["roles"]
    bridges = [c for c in merged["clients"] if c["username"] == SETTINGS.bridge_username]
    assert bridges == [c for c in renewed["clients"] if c["username"] == SETTINGS.bridge_username]
    assert len(merged["clients"]) == 4 and len(merged["roles"]) == 4


def test_a_broker_without_the_publisher_has_no_wildcard_publisher() -> None:
    config = bootstrap_config(
        SETTINGS, {SETTINGS.bridge_username: "b", SETTINGS.admin_username: "a"}
    )
    assert {c["username"] for c in config["clients"]} == {"urbanpulse-bridge", "urbanpulse-admin"}
    assert "urbanpulse-publisher" not in {r["rolename"] for r in config["roles"]}
