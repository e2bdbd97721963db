"""The naive reference: one process, a paho callback, one INSERT per message.

What a first IoT sink looks like: subscribe QoS 1 with a clean session (paho acks each message
as it arrives), parse the JSON, and insert the message's readings into the table with one
statement per message (``executemany``: one round trip and one commit per message), skipping
duplicates.  No validation, no Kafka, no alerts, no batching across messages: the floor that
UrbanPulse's pipeline is compared with in ``bench.stepped``.
"""

from __future__ import annotations

import asyncio
import multiprocessing.synchronize
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from urbanpulse.core.catalogue import get_kind
from urbanpulse.core.envelope import Reading
from urbanpulse.core.mqtt_login import Identity, broker_port, new_client
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.storage.db import connect
from urbanpulse.storage.writer import column_arrays, columns_of

AIR = get_kind("air")
COLUMNS = [name for name, _ in columns_of(AIR)]
INSERT_SQL = (
    f"INSERT INTO {AIR.table} ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))}) ON CONFLICT DO NOTHING"
)


def rows(topic: str, payload: bytes, received_at: datetime) -> list[list[Any]]:
    """The message's readings as table rows (the sensor id is the topic's third level)."""
    sensor_id = topic.split("/")[-2]
    document = orjson.loads(payload)
    items = document if isinstance(document, list) else [document]
    readings = [
        Reading(sensor_id, "air", datetime.fromisoformat(i["ts"]), i["values"], received_at, topic)
        for i in items
    ]
    return [[column[0] for column in column_arrays(AIR, [r])] for r in readings]


async def sink(
    settings: Settings,
    subscribed: multiprocessing.synchronize.Event,
) -> None:
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[tuple[str, bytes, datetime]] = asyncio.Queue()
    mqtt_settings = settings.mqtt
    # Reading the gateways' topics is the bridge's privilege: the sink stands in for a bridge.
    client = new_client(mqtt_settings, Identity.BRIDGE, f"{mqtt_settings.topic_root}-naive")

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        item = (msg.topic, bytes(msg.payload), datetime.now(UTC))
        loop.call_soon_threadsafe(arrived.put_nowait, item)

    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(mqtt_settings.host, broker_port(mqtt_settings))
    client.subscribe(f"{mqtt_settings.topic_root}/#", qos=1)
    client.loop_start()
    conn = await connect(settings, DbRole.WRITER)
    try:
        while True:
            topic, payload, received_at = await arrived.get()
            await conn.executemany(INSERT_SQL, rows(topic, payload, received_at))
    finally:
        client.loop_stop()
        await conn.close()


def run_sink(settings: Settings, subscribed: multiprocessing.synchronize.Event) -> None:
    """The body of the sink's process; it runs until terminated."""
    asyncio.run(sink(settings, subscribed))
