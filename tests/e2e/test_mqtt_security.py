"""Only a registered gateway may speak for its sensors (issue 12), on the real Mosquitto: every
refusal is made by a real client (mosquitto_pub / mosquitto_sub, or paho), and the allowed paths
(a gateway's own sensors, the bridge, TLS with the development CA) still reach Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.conftest import (
    Pipeline,
    read_readings,
    running_service,
    settings_env,
)
from urbanpulse.core.mqtt_login import Identity, password_of
from urbanpulse.core.settings import Settings
from urbanpulse.ingest.service import run_bridge
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage import registry

DEADLINE_S = 30.0
TS = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@dataclass(frozen=True)
class Login:
    username: str
    password: str


# --------------------------------------------------------------------------- real clients


def mosquitto_cli(
    tool: str, settings: Settings, args: list[str], login: Login | None, tmp: Path, port: int
) -> subprocess.CompletedProcess[str]:
    """Run mosquitto_pub or mosquitto_sub; the login goes in its options file
    ($XDG_CONFIG_HOME/<tool>, 0600), never on the command line."""
    config = tmp / f"xdg-{tool}"
    config.mkdir(exist_ok=True)
    options = config / tool
    options.write_text(f"-u {login.username}\n-P {login.password}\n" if login else "")
    os.chmod(options, 0o600)
    return subprocess.run(
        [tool, "-h", settings.mqtt.host, "-p", str(port), *args],
        env={**os.environ, "XDG_CONFIG_HOME": str(config)},
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


@dataclass
class Probe:
    """A paho MQTT 5 client that records the broker's answers (CONNACK, PUBACK, SUBACK)."""

    client: mqtt.Client
    connack: list[str] = field(default_factory=list)
    pubacks: dict[int, str] = field(default_factory=dict)
    subacks: list[list[str]] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def probe(settings: Settings, client_id: str, login: Login) -> Iterator[Probe]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(login.username, login.password)
    state = Probe(client)

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        state.connack.append(str(reason))
        state.answered.set()

    def on_publish(_c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        state.pubacks[mid] = str(reason)

    def on_subscribe(_c: mqtt.Client, _u: Any, _m: int, reasons: list[Any], _p: Any) -> None:
        state.subacks.append([str(r) for r in reasons])

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        state.disconnected.set()
        state.answered.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
    client.loop_start()
    try:
        assert state.answered.wait(DEADLINE_S), "the broker never answered CONNECT"
        yield state
    finally:
        client.disconnect()
        client.loop_stop()


async def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- gateways via the API


async def register(db: asyncpg.Connection, *sensor_ids: str) -> None:
    await registry.upsert(db, [registry.SensorRecord(s, "air") for s in sensor_ids])


async def gateway_with(pipeline: Pipeline, gateway_id: str, *sensor_ids: str) -> Login:
    async with pipeline.http() as http:
        created = await http.post("/v1/gateways", json={"gateway_id": gateway_id})
        assert created.status_code == 201, created.text
        if sensor_ids:
            bound = await http.post(
                f"/v1/gateways/{gateway_id}/sensors", json={"sensor_ids": list(sensor_ids)}
            )
            assert bound.status_code == 200, bound.text
    mqtt_login = created.json()["mqtt"]
    assert mqtt_login["username"] == mqtt_login["client_id"] == gateway_id
    return Login(mqtt_login["username"], mqtt_login["password"])


def reading(value: float) -> bytes:
    return reading_payload(TS, {"pm25": value})


# --------------------------------------------------------------------------- the refusals


def test_anonymous_clients_are_refused(settings: Settings, tmp_path: Path) -> None:
    topic = data_topic(settings.mqtt, "air", f"{settings.kafka.topic_prefix}-anon")
    published = mosquitto_cli(
        "mosquitto_pub",
        settings,
        ["-t", topic, "-m", "{}", "-q", "1"],
        None,
        tmp_path,
        settings.mqtt.port,
    )
    assert published.returncode != 0
    assert "not authori" in published.stderr.lower(), published.stderr
    subscribed = mosquitto_cli(
        "mosquitto_sub",
        settings,
        ["-t", "#", "-C", "1", "-W", "5"],
        None,
        tmp_path,
        settings.mqtt.port,
    )
    assert subscribed.returncode != 0
    assert "not authori" in subscribed.stderr.lower(), subscribed.stderr


async def test_a_gateway_publishes_only_for_its_own_sensors(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline, tmp_path: Path
) -> None:
    prefix = settings.kafka.topic_prefix
    own, other = f"{prefix}-own", f"{prefix}-other"
    await register(db, own, other)
    login = await gateway_with(pipeline, f"{prefix}-gw", own)

    # The forbidden reading goes first, from the real command-line client and from paho
    # (MQTT 5, whose PUBACK says why); the broker keeps a session's order, so once the allowed
    # reading that follows is on Kafka, the forbidden ones would be there before it.
    forbidden = mosquitto_cli(
        "mosquitto_pub",
        settings,
        [
            "-t",
            data_topic(settings.mqtt, "air", other),
            "-m",
            reading(1.0).decode(),
            "-q",
            "1",
            "-V",
            "mqttv5",
            "-i",
            login.username,
        ],
        login,
        tmp_path,
        settings.mqtt.port,
    )
    assert forbidden.returncode == 0, forbidden.stderr  # acked (and dropped): QoS 1 semantics
    with probe(settings, login.username, login) as state:
        assert state.connack == ["Success"]
        denied = state.client.publish(data_topic(settings.mqtt, "air", other), reading(2.0), qos=1)
        status = data_topic(settings.mqtt, "air", other).replace("/data", "/status")
        denied_status = state.client.publish(status, b"offline", qos=1)
        allowed = state.client.publish(data_topic(settings.mqtt, "air", own), reading(3.0), qos=1)
        await until(lambda: len(state.pubacks) == 3, "three PUBACKs")
        assert state.pubacks[denied.mid] == "Not authorized"
        assert state.pubacks[denied_status.mid] == "Not authorized"
        assert state.pubacks[allowed.mid] == "Success"

    records = await read_readings(settings, 1)
    assert [(r.sensor_id, r.values) for r in records] == [(own, {"pm25": 3.0})]


async def test_a_gateway_may_not_subscribe_to_the_citys_readings(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline, tmp_path: Path
) -> None:
    prefix = settings.kafka.topic_prefix
    own = f"{prefix}-own"
    await register(db, own)
    login = await gateway_with(pipeline, f"{prefix}-gw", own)
    root = settings.mqtt.topic_root
    filters = [
        f"{root}/#",
        f"$share/{prefix}-bridge/{root}/#",
        "#",
        data_topic(settings.mqtt, "air", own),
    ]
    with probe(settings, login.username, login) as state:
        state.client.subscribe([(f, 1) for f in filters])
        await until(lambda: state.subacks, "the SUBACK")
        assert state.subacks == [["Not authorized"] * len(filters)]
    sub = mosquitto_cli(
        "mosquitto_sub",
        settings,
        ["-t", f"{root}/#", "-i", login.username, "-V", "mqttv5", "-C", "1", "-W", "5"],
        login,
        tmp_path,
        settings.mqtt.port,
    )
    # mosquitto_sub says so and gives up (with exit status 0): it received nothing.
    assert sub.stderr == "All subscription requests were denied.\n" and sub.stdout == ""


async def test_no_one_else_may_take_the_bridges_client_id(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    prefix = settings.kafka.topic_prefix
    login = await gateway_with(pipeline, f"{prefix}-gw")
    with probe(settings, settings.mqtt.bridge_client(), login) as state:
        assert state.connack == ["Not authorized"]
    assert pipeline.bridge.connected.is_set()
    # The bridge keeps its session: a reading published now still reaches Kafka.
    gateway = MqttGateway(settings.mqtt, client_id=f"{prefix}-sim")
    await asyncio.to_thread(gateway.connect)
    gateway.publish(data_topic(settings.mqtt, "air", f"{prefix}-s1"), reading(4.0))
    await asyncio.to_thread(gateway.close)
    [record] = await read_readings(settings, 1)
    assert record.sensor_id == f"{prefix}-s1"


async def test_a_revoked_gateway_is_disconnected_and_refused(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    prefix = settings.kafka.topic_prefix
    own = f"{prefix}-own"
    await register(db, own)
    gateway_id = f"{prefix}-gw"
    login = await gateway_with(pipeline, gateway_id, own)
    with probe(settings, gateway_id, login) as state:
        assert state.connack == ["Success"]
        async with pipeline.http() as http:
            revoked = await http.delete(f"/v1/gateways/{gateway_id}")
            assert revoked.status_code == 200, revoked.text
            assert revoked.json()["status"] == "revoked"
        assert await asyncio.to_thread(state.disconnected.wait, DEADLINE_S)
    with probe(settings, gateway_id, login) as state:
        assert state.connack == ["Not authorized"]
    audit = await db.fetch(
        "SELECT action FROM audit_log WHERE target = $1 ORDER BY audit_id", gateway_id
    )
    assert [row["action"] for row in audit] == ["gateway.create", "gateway.bind", "gateway.revoke"]


async def test_gateway_names_that_could_be_wildcards_or_platform_identities_are_refused(
    settings: Settings, pipeline: Pipeline
) -> None:
    async with pipeline.http() as http:
        for name in [
            "gw/+",
            "gw#",
            "$SYS",
            settings.mqtt.bridge_username,
            settings.mqtt.bridge_client(),
        ]:
            answer = await http.post("/v1/gateways", json={"gateway_id": name})
            assert answer.status_code == 422, (name, answer.text)
        first = await http.post(
            "/v1/gateways", json={"gateway_id": f"{settings.kafka.topic_prefix}-gw"}
        )
        again = await http.post(
            "/v1/gateways", json={"gateway_id": f"{settings.kafka.topic_prefix}-gw"}
        )
        unknown = await http.post(
            f"/v1/gateways/{settings.kafka.topic_prefix}-gw/sensors", json={"sensor_ids": ["nope"]}
        )
    assert (first.status_code, again.status_code, unknown.status_code) == (201, 409, 404)


def test_the_cli_issues_binds_lists_and_revokes(settings: Settings) -> None:
    env = {**os.environ, **settings_env(settings)}
    gateway_id = f"{settings.kafka.topic_prefix}-cli"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "urbanpulse.cli", "gateways", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    created = cli("create", gateway_id, "--name", "test site")
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines())
    login = Login(fields["username"].strip(), fields["password"].strip())
    unknown = cli("bind", gateway_id, "no-such-sensor")
    assert unknown.returncode == 1 and "unknown sensors" in unknown.stderr
    listed = cli("list")
    assert any(line.split()[:2] == [gateway_id, "active"] for line in listed.stdout.splitlines())
    with probe(settings, gateway_id, login) as state:
        assert state.connack == ["Success"]
    revoked = cli("revoke", gateway_id)
    assert revoked.returncode == 0, revoked.stderr
    with probe(settings, gateway_id, login) as state:
        assert state.connack == ["Not authorized"]
    refused = cli("create", "gw/#")
    assert refused.returncode == 2 and "wildcards" in refused.stderr


# --------------------------------------------------------------------------- TLS


def test_a_plain_text_client_on_the_tls_port_is_refused(settings: Settings, tmp_path: Path) -> None:
    login = Login(settings.mqtt.username, password_of(settings.mqtt, Identity.PUBLISHER))
    topic = data_topic(settings.mqtt, "air", f"{settings.kafka.topic_prefix}-plain")
    plain = mosquitto_cli(
        "mosquitto_pub",
        settings,
        ["-t", topic, "-m", "{}", "-q", "1"],
        login,
        tmp_path,
        settings.mqtt.tls_port,
    )
    assert plain.returncode != 0, plain.stdout
    assert settings.mqtt.ca_file is not None
    over_tls = mosquitto_cli(
        "mosquitto_pub",
        settings,
        ["-t", topic, "-m", "{}", "-q", "1", "--cafile", str(settings.mqtt.ca_file)],
        login,
        tmp_path,
        settings.mqtt.tls_port,
    )
    assert over_tls.returncode == 0, over_tls.stderr


async def test_bridge_and_gateway_over_tls_with_the_development_ca(settings: Settings) -> None:
    secure = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"tls": True})})
    prefix = settings.kafka.topic_prefix
    async with running_service(run_bridge, secure, lambda bridge: bridge.connected.wait()):
        gateway = MqttGateway(secure.mqtt, client_id=f"{prefix}-tls")
        await asyncio.to_thread(gateway.connect)
        gateway.publish(data_topic(secure.mqtt, "air", f"{prefix}-tls-1"), reading(5.0))
        await asyncio.to_thread(gateway.close)
        assert gateway.acked == 1
        [record] = await read_readings(secure, 1)
    assert (record.sensor_id, record.values) == (f"{prefix}-tls-1", {"pm25": 5.0})
