"""A 3-broker Kafka cluster (replication 3, min.insync.replicas 2) loses nothing and doubles
nothing when a broker is SIGKILLed mid-stream (issue 10, "Kafka as a cluster").

The test starts a stack of its own (Mosquitto, PostgreSQL and three KRaft nodes, SASL/SCRAM and
ACLs on as everywhere), runs the bridge and the processor as real ``urbanpulse`` processes,
and kills the broker that leads the most readings partitions while a gateway publishes, so
that leadership moves mid-stream.  Every published reading must then be stored once, and be
on the readings topic once: the producers' acks=all and idempotence hold across the failover.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import free_ports, running_stack, settings_for_stack, stack_data_dir
from tests.e2e.conftest import ServiceProcess, eventually, isolated
from tests.e2e.test_faults import air_readings, publish_paced, stored_pairs, wait_until_flowing
from urbanpulse.core.envelope import decode_readings, schema_header
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.kafka_access import provision
from urbanpulse.simulators.gateway import MqttGateway
from urbanpulse.stack import LocalStack
from urbanpulse.stack.services.kafka import PORT_STEP, as_cluster
from urbanpulse.storage.db import connect
from urbanpulse.storage.schema import migrate

BROKERS = 3
TOTAL = 3000
RATE = 250.0  # readings per second: the kill lands mid-stream


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def controller_base() -> int:
    """A free port whose successors ``PORT_STEP`` apart are free too (the nodes' controllers)."""
    while True:
        [port] = free_ports(1)
        if all(_bindable(port + PORT_STEP * i) for i in range(BROKERS)):
            return port


def cluster_settings(data_dir: Path) -> Settings:
    base = settings_for_stack(data_dir)
    brokers = ",".join(f"127.0.0.1:{port}" for port in free_ports(BROKERS))
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"bootstrap_servers": brokers}),
            "stack": base.stack.model_copy(
                update={"kafka_controller_port": controller_base(), "kafka_heap": "384m"}
            ),
        }
    )
    return as_cluster(settings, BROKERS)


@pytest.fixture(scope="module")
def cluster_stack() -> Iterator[LocalStack]:
    with running_stack(cluster_settings(stack_data_dir("urbanpulse-cluster-"))) as stack:
        yield stack


async def readings_partitions(settings: Settings) -> list[dict[str, Any]]:
    """The readings topic's partitions as the cluster describes them (leader, replicas, ISR)."""
    admin = AIOKafkaAdminClient(**settings.kafka_as(KafkaPrincipal.ADMIN).client_kwargs())
    await admin.start()
    try:
        [described] = await admin.describe_topics([settings.kafka.topic("readings")])
    finally:
        await admin.close()
    return list(described["partitions"])


async def busiest_leader(settings: Settings) -> int:
    """The id of the broker that leads the most partitions of the readings topic."""
    partitions = await readings_partitions(settings)
    assert all(len(p["isr"]) == BROKERS for p in partitions), partitions
    [(leader, _count)] = Counter(p["leader"] for p in partitions).most_common(1)
    return int(leader)


async def readings_on_kafka(settings: Settings, expected: int) -> Counter[tuple[str, datetime]]:
    """How often each (sensor_id, ts) is on the readings topic, read from its start."""
    topic = settings.kafka.topic("readings")
    consumer = AIOKafkaConsumer(**settings.kafka_as(KafkaPrincipal.ADMIN).client_kwargs())
    await consumer.start()
    seen: Counter[tuple[str, datetime]] = Counter()
    try:
        partitions = [
            TopicPartition(topic, p["partition"]) for p in await readings_partitions(settings)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120

        async def behind() -> bool:
            positions = [await consumer.position(tp) for tp in partitions]
            return any(at < ends[tp] for at, tp in zip(positions, partitions, strict=True))

        while loop.time() < deadline and await behind():
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    unpacked = decode_readings(record.value or b"", schema_header(record.headers))
                    for _, reading in unpacked.readings:
                        seen[(reading.sensor_id, reading.ts)] += 1
    finally:
        await consumer.stop()
    assert sum(seen.values()) >= expected, "the readings topic was not read to its end"
    return seen


async def test_a_broker_killed_mid_stream_loses_and_doubles_nothing(
    cluster_stack: LocalStack, tmp_path: Path
) -> None:
    settings = isolated(cluster_stack.settings, f"c{uuid.uuid4().hex[:10]}")
    db = await connect(settings, DbRole.OWNER)
    try:
        await migrate(db)
        await provision(settings)
        sensor_ids, messages = await air_readings(settings, db, TOTAL)
    finally:
        await db.close()
    published = {key for _topic, _payload, key in messages}

    parts = [
        ServiceProcess(command, settings, tmp_path / f"{command}.log")
        for command in ("bridge", "process")
    ]
    gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gateway")
    try:
        for part in parts:
            part.start()
        await asyncio.to_thread(gateway.connect)
        await wait_until_flowing(settings, gateway, f"{settings.kafka.topic_prefix}-probe")
        victim = await busiest_leader(settings)
        publishing = asyncio.create_task(asyncio.to_thread(publish_paced, gateway, messages, RATE))

        async def sent() -> int:
            return gateway.sent

        await eventually(sent, lambda n: n >= TOTAL // 3, timeout_s=120)
        await asyncio.to_thread(
            cluster_stack.stop_service, "kafka" if victim == 1 else f"kafka-{victim}", True
        )
        await publishing
        await asyncio.to_thread(gateway.close)
        assert gateway.acked == gateway.sent

        stored = await eventually(
            lambda: stored_pairs(settings, sensor_ids),
            lambda pairs: len(pairs) >= TOTAL,
            timeout_s=180,
        )
        missing = published - stored
        assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
        assert stored == published

        on_kafka = await readings_on_kafka(settings, TOTAL)
        doubled = {key: n for key, n in on_kafka.items() if key in published and n > 1}
        assert not doubled, f"{len(doubled)} readings on Kafka more than once"
        assert published <= set(on_kafka)
        for part in parts:
            assert part.stop() == 0, part.log_text()[-3000:]
    finally:
        for part in parts:
            part.ensure_stopped()
