"""The local stack for real: Mosquitto, Kafka (KRaft) and PostgreSQL + PostGIS + TimescaleDB."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import stat
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import settings_for_stack, stack_data_dir
from urbanpulse.core.mqtt_login import Identity, new_client
from urbanpulse.core.settings import DbRole, KafkaPrincipal, KafkaSettings, Settings
from urbanpulse.stack import LocalStack, ServiceState, StackError, format_states
from urbanpulse.stack._layout import DEPLOY_DIR
from urbanpulse.stack.services.kafka import KAFKA_VERSION
from urbanpulse.storage.db import login

pytestmark = pytest.mark.stack

DEADLINE_S = 30.0


def _pid_gone(pid: int) -> bool:
    """No such process, or only a zombie left for its parent to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def _states(stack: LocalStack) -> dict[str, ServiceState]:
    return {state.name: state for state in stack.status()}


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except FileNotFoundError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields[0] not in "ZX" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def test_pom_pins_the_kafka_version_the_code_runs() -> None:
    pom = (DEPLOY_DIR / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match is not None
    assert match.group(1) == KAFKA_VERSION


def test_up_again_is_harmless(local_stack: LocalStack) -> None:
    before = _states(local_stack)
    after = {state.name: state for state in local_stack.up()}
    assert {name: st.pid for name, st in after.items()} == {
        name: st.pid for name, st in before.items()
    }
    assert all(st.running for st in after.values())


def test_status_reports_running_services_with_ports(
    local_stack: LocalStack, stack_settings: Settings
) -> None:
    states = _states(local_stack)
    assert set(states) == {"mosquitto", "kafka", "postgres"}
    assert states["mosquitto"].port == stack_settings.mqtt.port
    assert states["kafka"].port == int(stack_settings.kafka.bootstrap_servers.rsplit(":", 1)[1])
    assert states["postgres"].port == stack_settings.database.port
    for state in states.values():
        assert state.running
        assert state.pid is not None and not _pid_gone(state.pid)
        assert str(local_stack.data_dir) in state.detail  # the log file
    table = format_states(list(states.values()))
    assert "mosquitto" in table and "running" in table and str(stack_settings.mqtt.port) in table


def test_mqtt_publish_and_receive(stack_settings: Settings) -> None:
    """The publisher identity publishes a reading; the bridge's identity receives it."""
    cfg = stack_settings.mqtt
    topic = f"{cfg.topic_root}/air/t-{uuid.uuid4().hex}/data"
    received: list[bytes] = []
    subscribed = threading.Event()
    got = threading.Event()

    def on_subscribe(*_args: object) -> None:
        subscribed.set()

    def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        received.append(bytes(message.payload))
        got.set()

    reader = new_client(cfg, Identity.BRIDGE, f"t-{uuid.uuid4().hex}")
    reader.on_subscribe = on_subscribe
    reader.on_message = on_message
    reader.connect(cfg.host, cfg.port)
    reader.loop_start()
    publisher = new_client(cfg, Identity.PUBLISHER, f"t-{uuid.uuid4().hex}")
    publisher.connect(cfg.host, cfg.port)
    publisher.loop_start()
    try:
        reader.subscribe(topic, qos=1)
        assert subscribed.wait(DEADLINE_S)
        publisher.publish(topic, b"hello", qos=1).wait_for_publish(DEADLINE_S)
        assert got.wait(DEADLINE_S)
    finally:
        for client in (reader, publisher):
            client.disconnect()
            client.loop_stop()
    assert received == [b"hello"]


async def _kafka_roundtrip(kafka: KafkaSettings) -> None:
    topic = f"test.stack.{uuid.uuid4().hex}"
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"reading", key=b"sensor-1")
        assert meta.offset == 0
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.client_kwargs(),
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), DEADLINE_S)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"sensor-1", b"reading")


async def test_kafka_topic_produce_consume(stack_settings: Settings) -> None:
    await _kafka_roundtrip(stack_settings.kafka_as(KafkaPrincipal.ADMIN))


async def _pg_connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(**login(settings, DbRole.OWNER).connect_args(), timeout=DEADLINE_S)


async def test_postgres_has_postgis_and_apache_timescaledb(stack_settings: Settings) -> None:
    conn = await _pg_connect(stack_settings)
    try:
        extensions = {
            row["extname"] for row in await conn.fetch("SELECT extname FROM pg_extension")
        }
        license_ = await conn.fetchval("SHOW timescaledb.license")
        point = await conn.fetchval("SELECT ST_AsText(ST_MakePoint(1, 2))")
    finally:
        await conn.close()
    assert {"postgis", "timescaledb"} <= extensions
    assert license_ == "apache"
    assert point == "POINT(1 2)"


@pytest.mark.parametrize("hard", [False, True], ids=["graceful", "sigkill"])
async def test_kafka_stop_start_round_trip(
    local_stack: LocalStack, stack_settings: Settings, hard: bool
) -> None:
    old = _states(local_stack)["kafka"]
    assert old.pid is not None
    local_stack.stop_service("kafka", hard=hard)
    assert _pid_gone(old.pid)
    assert not _states(local_stack)["kafka"].running
    new = local_stack.start_service("kafka")
    assert new.running and new.pid not in (None, old.pid)
    await _kafka_roundtrip(stack_settings.kafka_as(KafkaPrincipal.ADMIN))


@pytest.mark.parametrize("hard", [False, True], ids=["graceful", "sigkill"])
async def test_postgres_stop_start_round_trip(
    local_stack: LocalStack, stack_settings: Settings, hard: bool
) -> None:
    old = _states(local_stack)["postgres"]
    assert old.pid is not None
    local_stack.stop_service("postgres", hard=hard)
    assert _pid_gone(old.pid)
    assert not _group_members(old.pid)  # no backend left behind either
    assert not _states(local_stack)["postgres"].running
    new = local_stack.start_service("postgres")
    assert new.running and new.pid not in (None, old.pid)
    conn = await _pg_connect(stack_settings)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def _uids(pid: int) -> set[int]:
    """The real, effective, saved and file-system uids of ``pid`` (/proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(field) for field in line.split()[1:]}
    raise AssertionError(f"no Uid line for pid {pid}")


def test_servers_run_as_their_own_unprivileged_users(local_stack: LocalStack) -> None:
    """Issue 12: started as root, no server keeps root (Kafka's JVM did)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: only a stack started as root switches users")
    users = {"mosquitto": "mosquitto", "kafka": "kafka", "postgres": "postgres"}
    for state in local_stack.status():
        assert state.pid is not None, state
        expected = pwd.getpwnam(users[state.name]).pw_uid
        assert expected != 0
        # Every process of the server: Postgres forks a backend per connection.
        for pid in [state.pid, *_group_members(state.pid)]:
            assert _uids(pid) == {expected}, (state.name, pid)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_logs_and_configs_are_private(local_stack: LocalStack) -> None:
    """Issue 12: data, logs and configs are 0700/0600, nothing in the stack readable by others."""
    root = local_stack.data_dir
    # The root itself stays searchable (each server's user must reach its own directory), so
    # every entry in it must shut others out; the servers' files are below those.
    entries = list(root.iterdir())
    assert {"logs", "mosquitto", "kafka", "postgres"} <= {entry.name for entry in entries}
    for entry in entries:
        assert _mode(entry) & 0o077 == 0, f"{entry} has mode {_mode(entry):o}"
    for directory in ["logs", "mosquitto", "kafka", "kafka/data", "postgres", "postgres/pgdata"]:
        assert _mode(root / directory) == 0o700, directory
    configs = [
        "mosquitto/mosquitto.conf",
        "kafka/server.properties",
        "kafka/log4j2.properties",
        "kafka/cluster.id",
        "postgres/pgdata/urbanpulse.conf",
        "postgres/pgdata/pg_hba.conf",
        "postgres/pgdata/postgresql.conf",
    ]
    for config in configs:
        assert _mode(root / config) == 0o600, config
    for name in ("mosquitto", "kafka", "postgres"):
        log = local_stack.log_path(name)
        assert log.stat().st_size > 0, log
        assert _mode(log) == 0o600, log


def test_stop_and_start_of_unknown_service_is_refused(local_stack: LocalStack) -> None:
    with pytest.raises(StackError, match="unknown service"):
        local_stack.stop_service("redis")


def test_down_leaves_no_process_behind() -> None:
    """A stack of its own, so the session's stack stays up for the other tests."""
    data_dir = stack_data_dir("urbanpulse-stack-down-")
    stack = LocalStack(settings_for_stack(data_dir))
    try:
        states = stack.up()
        assert all(st.running for st in states)
        pids = [st.pid for st in states if st.pid is not None]
        assert len(pids) == 3
        stack.down()
        deadline = time.monotonic() + DEADLINE_S
        while not all(_pid_gone(pid) and not _group_members(pid) for pid in pids):
            assert time.monotonic() < deadline, "processes left behind after down()"
            time.sleep(0.05)
        assert not any(st.running for st in stack.status())
        assert not list(data_dir.glob("*.pid"))
        stack.down()  # nothing runs: harmless
    finally:
        stack.down()
        shutil.rmtree(data_dir, ignore_errors=True)
