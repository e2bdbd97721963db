"""The bridge's containment, with an in-memory stand-in for aiokafka's producer.

The same behaviour against the real servers: tests/e2e/test_hostile_input.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, MessageSizeTooLargeError

from urbanpulse.core.envelope import DeadLetter
from urbanpulse.core.settings import Settings
from urbanpulse.ingest import bridge as bridge_module
from urbanpulse.ingest.bridge import IncomingMessage, MqttBridge

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TOPIC = "urbanpulse/v1/air/hcm-air-0001/data"
GOOD = b'{"ts": "2026-11-22T07:59:00Z", "values": {"pm25": 12.5}}'


class StandInProducer:
    """``send`` as aiokafka's: a future per record, or an error raised before queueing it."""

    def __init__(
        self,
        errors: list[KafkaError | None] | None = None,
        max_bytes: int = 10**9,
        answers: list[KafkaError | None] | None = None,
    ) -> None:
        self.errors = errors or []  # raised by send()
        self.answers = answers or []  # set on the futures (the broker's answer)
        self.max_bytes = max_bytes
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> Any:
        if self.errors and (error := self.errors.pop(0)) is not None:
            raise error
        if len(value) > self.max_bytes:
            raise MessageSizeTooLargeError(f"The message is {len(value)} bytes")
        self.sent.append((topic, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            future.set_result(None)
        else:
            future.set_exception(answer)
        return future


class StandInClient:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


def message(payload: bytes, topic: str = TOPIC) -> IncomingMessage:
    return IncomingMessage(topic, payload, mid=1, qos=1, received_at=NOW)


def make_bridge(producer: StandInProducer) -> MqttBridge:
    return MqttBridge(Settings(), producer)  # type: ignore[arg-type]


async def records_sent(bridge: MqttBridge, incoming: IncomingMessage) -> None:
    await bridge._send_all(bridge._contained_records(incoming), incoming)


async def test_whatever_decoding_throws_becomes_the_messages_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_args: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(bridge_module, "decode_message", explode)
    producer = StandInProducer()
    bridge = make_bridge(producer)
    await records_sent(bridge, message(GOOD))
    [(topic, value)] = producer.sent
    assert topic == "urbanpulse.deadletter"
    dead = DeadLetter.from_json(value)
    assert dead.reason.startswith("internal error while decoding: RecursionError")
    assert dead.raw == GOOD
    assert bridge.counters.rejected_crash == 1


async def test_a_record_kafka_refuses_for_good_is_replaced_then_dropped_never_retried() -> None:
    producer = StandInProducer(max_bytes=3000)
    bridge = make_bridge(producer)
    bad = orjson.dumps({"ts": "x" * 10_000, "values": {"pm25": 1}})
    await records_sent(bridge, message(bad))
    [(topic, value)] = producer.sent
    assert topic == "urbanpulse.deadletter"
    assert "MessageSizeTooLargeError" in DeadLetter.from_json(value).reason
    assert bridge.counters.kafka_refused == 1

    tiny = StandInProducer(max_bytes=100)  # even the small replacement is refused
    bridge = make_bridge(tiny)
    await records_sent(bridge, message(bad))
    assert tiny.sent == []
    assert (bridge.counters.kafka_refused, bridge.counters.kafka_dropped) == (1, 1)


async def test_transient_errors_are_retried_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge_module, "RETRY_DELAY_S", 0.0)
    down = KafkaConnectionError()
    producer = StandInProducer(errors=[down, down, None, down])
    bridge = make_bridge(producer)
    batch = b"[" + GOOD + b"," + GOOD.replace(b"12.5", b"13.5") + b"]"
    await records_sent(bridge, message(batch))
    assert [orjson.loads(v)["values"]["pm25"] for _, v in producer.sent] == [12.5, 13.5]
    assert bridge.counters.kafka_retries == 3


async def test_dead_letters_over_the_rate_cap_are_counted_not_produced() -> None:
    producer = StandInProducer()
    bridge = make_bridge(producer)
    cap = Settings().ingest.dead_letter_rate_per_source
    for _ in range(cap + 5):
        await records_sent(bridge, message(b"{broken"))
    await records_sent(bridge, message(GOOD))
    topics = [topic for topic, _ in producer.sent]
    assert topics == ["urbanpulse.deadletter"] * cap + ["urbanpulse.readings"]
    assert bridge.counters.dead_letters == cap
    assert bridge.counters.dead_letters_capped == 5
    assert bridge.counters.rejected_malformed == cap + 5


async def test_the_message_is_acked_once_kafka_answered_for_every_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker refuses the dead letter for good (replaced) and the reading once (resent)."""
    monkeypatch.setattr(bridge_module, "RETRY_DELAY_S", 0.0)
    producer = StandInProducer(
        answers=[KafkaConnectionError(), MessageSizeTooLargeError(), None, None]
    )
    bridge = make_bridge(producer)
    client = StandInClient()
    incoming = message(b"[" + GOOD + b', "nonsense"]')
    assert bridge._handoff.acquire(len(incoming.payload), timeout_s=0)
    sent = await bridge._send_all(bridge._contained_records(incoming), incoming)
    await bridge._ack_after_kafka(client, incoming, sent, asyncio.Event())  # type: ignore[arg-type]
    assert client.acked == [incoming.mid]
    reasons = [DeadLetter.from_json(v).reason for t, v in producer.sent if "deadletter" in t]
    assert len(reasons) == 2 and "MessageSizeTooLargeError" in reasons[1]
    assert [t for t, _ in producer.sent].count("urbanpulse.readings") == 2  # sent, then resent
    assert (bridge.counters.kafka_refused, bridge.counters.kafka_retries) == (1, 1)
    # Its room was given back: a message as large as the whole budget fits again.
    assert bridge._handoff.acquire(Settings().ingest.max_queued_bytes, timeout_s=0)


async def test_kafka_failing_at_shutdown_leaves_the_message_unacked() -> None:
    producer = StandInProducer(answers=[KafkaConnectionError()])
    bridge = make_bridge(producer)
    client = StandInClient()
    incoming = message(GOOD)
    assert bridge._handoff.acquire(len(incoming.payload), timeout_s=0)
    sent = await bridge._send_all(bridge._contained_records(incoming), incoming)
    stop = asyncio.Event()
    stop.set()
    await bridge._ack_after_kafka(client, incoming, sent, stop)  # type: ignore[arg-type]
    assert client.acked == []
