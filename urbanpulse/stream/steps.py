"""Pure processing steps, testable without Kafka or a database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from urbanpulse.core.envelope import READING_SCHEMA, DeadLetter, Reading
from urbanpulse.core.untrusted import preview
from urbanpulse.storage.registry import RegisteredSensor, SensorRecord
from urbanpulse.stream.admission import PendingBudget
from urbanpulse.stream.validate import RecordLimits, reading_problems

# Enough of an untrusted exception message to say what was wrong, never the whole record.
REASON_CHARS = 300


@dataclass(frozen=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def source(self) -> str:
        return f"kafka:{self.topic}/{self.partition}@{self.offset}"


@dataclass
class Checked:
    accepted: list[Reading] = field(default_factory=list)
    to_register: list[SensorRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    pending_refused: int = 0  # readings of unknown sensors beyond the pending budget


def decode_records(
    records: Iterable[ConsumedRecord], now: datetime, limits: RecordLimits
) -> Checked:
    """Envelopes from Kafka records; a record that is not a valid one is dead-lettered, not fatal.

    Any producer can write to the readings topic: each record is checked for its size, its
    ``schema`` header (a record without one is judged by its content alone), the envelope and
    then the catalogue (:func:`urbanpulse.stream.validate.reading_problems`).
    """
    checked = Checked()
    for record in records:
        reading, problems = _decode(record, now, limits)
        if reading is not None and not problems:
            checked.accepted.append(reading)
            continue
        # An oversized record is kept in part: a dead letter must itself fit in a Kafka record.
        raw = record.value[: limits.max_bytes]
        checked.dead_letters.append(DeadLetter(tuple(problems), record.source, "stream", raw, now))
    return checked


def _decode(
    record: ConsumedRecord, now: datetime, limits: RecordLimits
) -> tuple[Reading | None, list[str]]:
    max_bytes = limits.max_bytes
    if len(record.value) > max_bytes:
        return None, [
            f"record of {len(record.value)} bytes is larger than the {max_bytes} bytes a reading "
            f"may take (first {max_bytes} bytes kept)"
        ]
    schema = dict(record.headers).get("schema")
    if schema is not None and schema != READING_SCHEMA:
        return None, [
            f"schema header {preview(schema)} is not {READING_SCHEMA.decode()}: "
            "not a reading envelope"
        ]
    try:
        reading = Reading.from_json(record.value)
    except Exception as exc:  # the boundary with any producer: no record may stop us
        return None, [_bounded(f"not a reading envelope: {exc}")]
    return reading, reading_problems(reading, now, limits)


def _bounded(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + "…"


def check_registry(
    readings: Iterable[Reading],
    registry: Mapping[str, RegisteredSensor],
    provisioning: Literal["pending", "reject"],
    now: datetime,
    budget: PendingBudget,
) -> Checked:
    """Match readings to registered sensors.

    An unknown sensor is either registered as pending (its readings kept, for an operator to
    approve) or rejected, by the provisioning setting; pending registrations are limited by
    ``budget`` (see :mod:`urbanpulse.stream.admission`).  A reading whose kind contradicts the
    registry is always rejected: storing it would put one device's data in another's table.
    """
    checked = Checked()
    pending: dict[str, SensorRecord] = {}
    for reading in readings:
        known = registry.get(reading.sensor_id)
        sensor = preview(reading.sensor_id)
        problem = None
        if known is not None and known.kind != reading.kind:
            problem = (
                f"sensor {sensor} is registered as kind {known.kind!r}, "
                f"but sent a {preview(reading.kind)} reading"
            )
        elif known is not None and known.status == "retired":
            problem = f"sensor {sensor} is retired"
        elif known is None and provisioning == "reject":
            problem = f"unknown sensor {sensor} (provisioning mode: reject)"
        elif known is None and reading.sensor_id not in pending:
            if len(pending) >= budget.remaining:
                problem = f"unknown sensor {sensor} not registered as pending: {budget.why_not}"
                checked.pending_refused += 1
            else:
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
