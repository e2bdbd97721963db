"""The processor caps its dead letters per sender, as the bridge does (issue 9: a flood of
records from another producer must not drown the dead-letter topic or the log)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from urbanpulse.core import metrics as m
from urbanpulse.core.envelope import DeadLetter
from urbanpulse.core.settings import IngestSettings, Settings
from urbanpulse.stream.processor import StreamProcessor

AT = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


class StandInProducer:
    """``send`` as aiokafka's: it returns the future of the broker's answer."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, _topic: str, value: bytes, **_kwargs: Any) -> asyncio.Future[None]:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def dead(source: str) -> DeadLetter:
    return DeadLetter(("not a reading envelope",), source, "stream", b"junk", AT)


def processor(producer: StandInProducer, per_source: int, total: int) -> StreamProcessor:
    ingest = IngestSettings(dead_letter_rate_per_source=per_source, dead_letter_rate_total=total)
    settings = Settings().model_copy(update={"ingest": ingest})
    return StreamProcessor(settings, None, producer)  # type: ignore[arg-type]


async def test_records_of_one_partition_share_one_budget(caplog: pytest.LogCaptureFixture) -> None:
    producer = StandInProducer()
    stage = processor(producer, per_source=3, total=100)
    flood = [dead(f"kafka:p.readings/0@{offset}") for offset in range(10)]
    other = [dead("kafka:p.readings/1@0"), dead("urbanpulse/v1/air/s1/data")]
    await stage._dead_letter(flood + other)
    # 3 of partition 0's ten, then the other partition's and the MQTT topic's own.
    assert len(producer.sent) == 5
    assert stage.metrics.value(m.STREAM_DEAD_LETTERS_CAPPED) == 7
    assert sum("dead-lettered kafka:p.readings/0@" in r.message for r in caplog.records) == 3


async def test_the_total_caps_many_senders_together() -> None:
    producer = StandInProducer()
    stage = processor(producer, per_source=5, total=4)
    await stage._dead_letter([dead(f"urbanpulse/v1/air/s{i}/data") for i in range(6)])
    assert len(producer.sent) == 4
    assert stage.metrics.value(m.STREAM_DEAD_LETTERS_CAPPED) == 2
