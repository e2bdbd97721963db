"""The MQTT source's hand-off from paho's thread, without a broker: paho's callback is called
from a thread of its own, as paho's network loop calls it."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt
from pydantic import SecretStr

from tests.conftest import free_ports
from urbanpulse.core.settings import MqttSettings
from urbanpulse.ingest.handoff import HandOff
from urbanpulse.ingest.mqtt_source import IncomingMessage, MqttSource

TOPIC = b"urbanpulse/v1/air/hcm-air-0001/data"


def paho_message(mid: int) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(mid=mid, topic=TOPIC)
    message.payload = b'{"n": %d}' % mid
    message.qos = 1
    return message


async def test_messages_come_out_in_order_and_only_acks_make_room_for_more() -> None:
    [port] = free_ports(1)  # nothing listens: paho keeps trying to connect meanwhile
    source = MqttSource(
        MqttSettings(port=port, bridge_password=SecretStr("unused")),
        HandOff(3, 10**6),
        receive_maximum=10,
    )
    received: list[IncomingMessage] = []
    async with source:

        def paho_thread() -> None:
            for mid in range(1, 8):  # blocks while 3 messages are held unacked
                source._on_message(None, None, paho_message(mid))  # type: ignore[arg-type]

        async def consume() -> None:
            async for batch in source:
                assert len(batch) <= 3  # never more than the hand-off holds
                received.extend(batch)
                for message in batch:
                    source.ack(message)
                if len(received) == 7:
                    return

        arriving = asyncio.create_task(asyncio.to_thread(paho_thread))
        await asyncio.wait_for(consume(), 30)  # without acks, paho's thread would stay blocked
        await asyncio.wait_for(arriving, 30)
    assert [m.mid for m in received] == list(range(1, 8))
    assert [m.payload for m in received] == [b'{"n": %d}' % mid for mid in range(1, 8)]
    assert {m.topic for m in received} == {TOPIC.decode()}
