"""Pure processing steps, testable without Kafka or a database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from urbanpulse.core.envelope import DeadLetter, EnvelopeError, Reading
from urbanpulse.storage.registry import RegisteredSensor, SensorRecord


@dataclass(frozen=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def source(self) -> str:
        return f"kafka:{self.topic}/{self.partition}@{self.offset}"


@dataclass
class Checked:
    accepted: list[Reading] = field(default_factory=list)
    to_register: list[SensorRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def decode_records(records: Iterable[ConsumedRecord], now: datetime) -> Checked:
    """Envelopes from Kafka records; a record that is not one is dead-lettered, not fatal."""
    checked = Checked()
    for record in records:
        try:
            checked.accepted.append(Reading.from_json(record.value))
        except EnvelopeError as exc:
            checked.dead_letters.append(
                DeadLetter((str(exc),), record.source, "stream", record.value, now)
            )
    return checked


def check_registry(
    readings: Iterable[Reading],
    registry: Mapping[str, RegisteredSensor],
    provisioning: Literal["pending", "reject"],
    now: datetime,
) -> Checked:
    """Match readings to registered sensors.

    An unknown sensor is either registered as pending (its readings kept, for an operator to
    approve) or rejected, by the provisioning setting.  A reading whose kind contradicts the
    registry is always rejected: storing it would put one device's data in another's table.
    """
    checked = Checked()
    pending: dict[str, SensorRecord] = {}
    for reading in readings:
        known = registry.get(reading.sensor_id)
        problem = None
        if known is not None and known.kind != reading.kind:
            problem = (
                f"sensor {reading.sensor_id!r} is registered as kind {known.kind!r}, "
                f"but sent a {reading.kind!r} reading"
            )
        elif known is not None and known.status == "retired":
            problem = f"sensor {reading.sensor_id!r} is retired"
        elif known is None and provisioning == "reject":
            problem = f"unknown sensor {reading.sensor_id!r} (provisioning mode: reject)"
        elif known is None and reading.sensor_id not in pending:
            lon, lat = reading.location or (None, None)
            pending[reading.sensor_id] = SensorRecord(
                reading.sensor_id, reading.kind, lat=lat, lon=lon, status="pending"
            )
        if problem is None:
            checked.accepted.append(reading)
        else:
            checked.dead_letters.append(
                DeadLetter((problem,), reading.source, "stream", reading.to_json(), now)
            )
    checked.to_register = list(pending.values())
    return checked
