"""The bridge's containment, with in-memory stand-ins for aiokafka's producer and the MQTT source.

The same behaviour against the real servers: tests/e2e/test_hostile_input.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, MessageSizeTooLargeError

from urbanpulse.core.envelope import DeadLetter, decode_readings
from urbanpulse.core.settings import Settings
from urbanpulse.ingest import bridge as bridge_module
from urbanpulse.ingest import records as records_module
from urbanpulse.ingest.bridge import MqttBridge
from urbanpulse.ingest.mqtt_source import IncomingMessage

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TOPIC = "urbanpulse/v1/air/hcm-air-0001/data"
GOOD = b'{"ts": "2026-11-22T07:59:00Z", "values": {"pm25": 12.5}}'


class StandInProducer:
    """``send`` and ``send_batch`` as aiokafka's: a future per record or batch, or an error
    raised before queueing it.  Errors and answers are taken in the order of the calls."""

    def __init__(
        self,
        errors: list[KafkaError | None] | None = None,
        max_bytes: int = 10**9,
        answers: list[KafkaError | None] | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> None:
        self.errors = errors or []  # raised by send()
        self.answers = answers or []  # set on the futures (the broker's answer)
        self.max_bytes = max_bytes
        self.sent: list[tuple[str, bytes]] = []
        self.batches: list[list[bytes]] = []  # the values of each send_batch
        self.on_send = on_send  # called as each record is queued

    async def send(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> Any:
        if self.errors and (error := self.errors.pop(0)) is not None:
            raise error
        if len(value) > self.max_bytes:
            raise MessageSizeTooLargeError(f"The message is {len(value)} bytes")
        return self._queued(topic, [value])

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> StandInBatch:
        return StandInBatch()

    async def send_batch(self, batch: StandInBatch, topic: str, *, partition: int) -> Any:
        """As ``send``, for every record of the batch at once: one error, one answer."""
        if self.errors and (error := self.errors.pop(0)) is not None:
            raise error
        self.batches.append(list(batch.values))
        return self._queued(topic, batch.values)

    def _queued(self, topic: str, values: list[bytes]) -> asyncio.Future[None]:
        self.sent += [(topic, value) for value in values]
        if self.on_send is not None:
            self.on_send()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            future.set_result(None)
        else:
            future.set_exception(answer)
        return future


class StandInBatch:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def append(self, *, timestamp: None, key: bytes, value: bytes, headers: Any) -> object:
        self.values.append(value)
        return object()  # the record's metadata; None would mean the batch is full

    def close(self) -> None:
        pass


class StandInSource:
    """``MqttSource`` as the bridge uses it: batches of messages, then acks or releases."""

    def __init__(self, *batches: list[IncomingMessage]) -> None:
        self.batches = batches
        self.acked: list[int] = []
        self.released: list[int] = []
        self.connected = asyncio.Event()

    async def __aenter__(self) -> StandInSource:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        pass

    async def __aiter__(self) -> AsyncIterator[list[IncomingMessage]]:
        for batch in self.batches:
            yield batch

    def ack(self, message: IncomingMessage) -> None:
        self.acked.append(message.mid)

    def release(self, message: IncomingMessage) -> None:
        self.released.append(message.mid)


def pm25s(values: list[bytes]) -> list[float]:
    """The pm25 of each reading in the bridge's records, in their order."""
    return [
        reading.values["pm25"]
        for value in values
        for _, reading in decode_readings(value, b"readings/2").readings
    ]


def message(payload: bytes, topic: str = TOPIC, mid: int = 1) -> IncomingMessage:
    return IncomingMessage(topic, payload, mid=mid, qos=1, received_at=NOW)


async def bridged(
    producer: StandInProducer, *batches: list[IncomingMessage], stop: asyncio.Event | None = None
) -> tuple[MqttBridge, StandInSource]:
    """Run a bridge over the stand-in producer until the source has no more messages."""
    source = StandInSource(*batches)
    bridge = MqttBridge(Settings(), producer, source)  # type: ignore[arg-type]
    await asyncio.wait_for(bridge.run(stop or asyncio.Event()), 30)
    return bridge, source


async def test_whatever_decoding_throws_becomes_the_messages_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_args: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(records_module, "decode_message", explode)
    producer = StandInProducer()
    bridge, source = await bridged(producer, [message(GOOD)])
    [(topic, value)] = producer.sent
    assert topic == "urbanpulse.deadletter"
    dead = DeadLetter.from_json(value)
    assert dead.reason.startswith("internal error while decoding: RecursionError")
    assert dead.raw == GOOD
    assert bridge.counters.rejected_crash == 1
    assert source.acked == [1]  # the poison pill is acked, never redelivered


async def test_a_record_kafka_refuses_for_good_is_replaced_then_dropped_never_retried() -> None:
    producer = StandInProducer(max_bytes=3000)
    bad = orjson.dumps({"ts": "x" * 10_000, "values": {"pm25": 1}})
    bridge, _ = await bridged(producer, [message(bad)])
    [(topic, value)] = producer.sent
    assert topic == "urbanpulse.deadletter"
    assert "MessageSizeTooLargeError" in DeadLetter.from_json(value).reason
    assert bridge.counters.kafka_refused == 1

    tiny = StandInProducer(max_bytes=100)  # even the small replacement is refused
    bridge, source = await bridged(tiny, [message(bad)])
    assert tiny.sent == []
    assert (bridge.counters.kafka_refused, bridge.counters.kafka_dropped) == (1, 1)
    assert source.acked == [1]


async def test_transient_errors_are_retried_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge_module, "RETRY_DELAY_S", 0.0)
    down = KafkaConnectionError()
    producer = StandInProducer(errors=[down, down, None, down])
    second = GOOD.replace(b"12.5", b"13.5")
    bridge, source = await bridged(producer, [message(GOOD, mid=1), message(second, mid=2)])
    assert pm25s([v for _, v in producer.sent]) == [12.5, 13.5]
    # Both records' batch fails (the 1st error); each message then waits once for that and
    # once more for its record's failed resend alone (the 2nd and 4th errors): 2 x 2 waits.
    assert bridge.counters.kafka_retries == 4
    assert sorted(source.acked) == [1, 2]


async def test_dead_letters_over_the_rate_cap_are_counted_not_produced() -> None:
    producer = StandInProducer()
    cap = Settings().ingest.dead_letter_rate_per_source
    broken = [message(b"{broken", mid=mid) for mid in range(cap + 5)]
    bridge, source = await bridged(producer, broken[:10], broken[10:], [message(GOOD, mid=99)])
    topics = [topic for topic, _ in producer.sent]
    assert topics == ["urbanpulse.deadletter"] * cap + ["urbanpulse.readings"]
    assert bridge.counters.dead_letters == cap
    assert bridge.counters.dead_letters_capped == 5
    assert bridge.counters.rejected_malformed == cap + 5
    # Capped or not, every message is acked: only the record of its faults is left out.
    assert sorted(source.acked) == [*range(cap + 5), 99]


async def test_the_message_is_acked_once_kafka_answered_for_every_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker refuses the dead letter for good (replaced) and the reading once (resent).

    The dead letter is sent first, on its own; the reading goes in a batch, sent after it."""
    monkeypatch.setattr(bridge_module, "RETRY_DELAY_S", 0.0)
    producer = StandInProducer(
        answers=[MessageSizeTooLargeError(), KafkaConnectionError(), None, None]
    )
    bridge, source = await bridged(producer, [message(b"[" + GOOD + b', "nonsense"]')])
    assert source.acked == [1]
    assert bridge.last_ack_at is not None
    reasons = [DeadLetter.from_json(v).reason for t, v in producer.sent if "deadletter" in t]
    assert len(reasons) == 2 and "MessageSizeTooLargeError" in reasons[1]
    assert [t for t, _ in producer.sent].count("urbanpulse.readings") == 2  # sent, then resent
    assert (bridge.counters.kafka_refused, bridge.counters.kafka_retries) == (1, 1)


async def test_kafka_failing_at_shutdown_leaves_the_message_unacked() -> None:
    stop = asyncio.Event()
    producer = StandInProducer(answers=[KafkaConnectionError()], on_send=stop.set)
    bridge, source = await bridged(producer, [message(GOOD)], stop=stop)
    assert (source.acked, source.released) == ([], [1])
    assert bridge.last_ack_at is None


async def test_a_refused_batch_is_sent_again_record_by_record_to_find_the_one_at_fault() -> None:
    second = GOOD.replace(b"12.5", b"13.5")
    producer = StandInProducer(
        answers=[MessageSizeTooLargeError(), None, MessageSizeTooLargeError(), None]
    )  # the batch, then each record alone (the second refused), then its dead letter
    bridge, source = await bridged(producer, [message(GOOD, mid=1), message(second, mid=2)])
    readings = pm25s([v for t, v in producer.sent if "readings" in t])
    assert readings == [12.5, 13.5, 12.5, 13.5]  # in the batch, then alone
    [letter] = [DeadLetter.from_json(v) for t, v in producer.sent if "deadletter" in t]
    assert "Kafka refused the record" in letter.reason
    assert (bridge.counters.kafka_refused, bridge.counters.kafka_retries) == (1, 0)
    assert sorted(source.acked) == [1, 2]


async def test_readings_of_successive_mqtt_batches_share_a_kafka_batch_within_the_linger() -> None:
    """A linger longer than the test: nothing is sent until the source ends, then one record
    batch holds one sensor's readings from three MQTT batches, in their order."""
    base = Settings()
    settings = base.model_copy(
        update={"ingest": base.ingest.model_copy(update={"kafka_linger_ms": 3_600_000})}
    )
    producer = StandInProducer()
    readings = [GOOD.replace(b"12.5", str(value).encode()) for value in (1.5, 2.5, 3.5)]
    source = StandInSource(*[[message(r, mid=mid)] for mid, r in enumerate(readings)])
    bridge = MqttBridge(settings, producer, source)  # type: ignore[arg-type]
    await asyncio.wait_for(bridge.run(asyncio.Event()), 30)
    [batch] = producer.batches
    assert pm25s(batch) == [1.5, 2.5, 3.5]
    assert sorted(source.acked) == [0, 1, 2]
