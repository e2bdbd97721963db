"""Kafka refuses whoever has no credentials, and each principal outside its ACL (issue 12).

Real clients against the session's stack (SASL/SCRAM, StandardAuthorizer): kcat, an outside
client, without credentials; aiokafka, the platform's own client, as each principal.  Every
refusal has an allowed twin on the same topic, so a test cannot pass because the topic is
missing or the broker is down.  (Debian 12's kcat, librdkafka 2.0.2, cannot speak SCRAM to a
Kafka 4 broker at all (librdkafka#4895), so the principals' checks use aiokafka.)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from tests.e2e.conftest import settings_env
from urbanpulse.core.settings import KafkaPrincipal, Settings

P = KafkaPrincipal
TIMEOUT_S = 60.0


async def produce(settings: Settings, principal: KafkaPrincipal, topic: str) -> None:
    """One record to ``topic`` as ``principal``, acknowledged by all in-sync replicas."""
    producer = AIOKafkaProducer(**settings.kafka_as(principal).client_kwargs(), acks="all")
    await producer.start()
    try:
        value = f"{principal.value}-{uuid.uuid4().hex}".encode()
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"k"), TIMEOUT_S)
    finally:
        await producer.stop()


async def consume(
    settings: Settings, principal: KafkaPrincipal, topic: str, group: str | None = None
) -> int:
    """Fetch ``topic`` from its start as ``principal`` (in ``group``, or without one)
    until it returns a record or an error; the number of records fetched."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_as(principal).client_kwargs(),
        group_id=group,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.subscribe([topic])  # without a group: every partition, from its start
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT_S
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            fetched = sum(len(records) for records in batches.values())
            if fetched:
                return fetched
        return 0
    finally:
        await consumer.stop()


def test_kcat_without_credentials_is_refused(settings: Settings) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat is not installed (deploy/install-test-tools.sh installs it)")
    listed = subprocess.run(
        [kcat, "-b", settings.kafka.bootstrap_servers, "-L", "-m", "10"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode != 0
    assert "SASL" in listed.stderr, listed.stderr
    assert settings.kafka.topic("readings") not in listed.stdout


async def test_a_client_without_credentials_or_with_a_wrong_password_is_refused(
    settings: Settings,
) -> None:
    readings = settings.kafka.topic("readings")
    await produce(settings, P.BRIDGE, readings)  # the allowed twin

    anonymous = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(anonymous.start(), TIMEOUT_S)
    await anonymous.stop()

    wrong = {**settings.kafka_as(P.BRIDGE).client_kwargs(), "sasl_plain_password": "guessed"}
    guessing = AIOKafkaProducer(**wrong)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(guessing.start(), TIMEOUT_S)
    await guessing.stop()


async def test_the_bridge_cannot_read_readings_or_write_alerts(settings: Settings) -> None:
    readings, alerts = settings.kafka.topic("readings"), settings.kafka.topic("alerts")
    await produce(settings, P.BRIDGE, readings)
    with pytest.raises(TopicAuthorizationFailedError):
        await consume(settings, P.BRIDGE, readings)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(settings, P.BRIDGE, alerts)
    # The twins: the record is there for the processor, and the processor may write alerts.
    assert await consume(settings, P.PROCESSOR, readings, settings.kafka.consumer_group) == 1
    await produce(settings, P.PROCESSOR, alerts)


async def test_the_api_cannot_write(settings: Settings) -> None:
    for topic in ("readings", "alerts", "deadletter"):
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(settings, P.API, settings.kafka.topic(topic))
    await produce(settings, P.PROCESSOR, settings.kafka.topic("alerts"))
    assert await consume(settings, P.API, settings.kafka.topic("alerts")) == 1


async def test_the_processor_cannot_forge_readings_nor_use_another_group(
    settings: Settings,
) -> None:
    readings = settings.kafka.topic("readings")
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(settings, P.PROCESSOR, readings)
    await produce(settings, P.BRIDGE, readings)
    with pytest.raises(GroupAuthorizationFailedError):
        await consume(settings, P.PROCESSOR, readings, f"{settings.kafka.consumer_group}-other")


def test_the_provision_command_grants_a_new_prefix(settings: Settings) -> None:
    """`urbanpulse kafka provision`, an operator's command, as the admin: the bridge may
    write a new prefix's readings afterwards, and not before."""
    fresh = settings.isolated(f"p{uuid.uuid4().hex[:10]}")
    readings = fresh.kafka.topic("readings")
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(produce(fresh, P.BRIDGE, readings))
    done = subprocess.run(
        [sys.executable, "-m", "urbanpulse.cli", "kafka", "provision"],
        env={**os.environ, **settings_env(fresh)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert fresh.kafka.topic("*") in done.stdout
    asyncio.run(produce(fresh, P.BRIDGE, readings))
