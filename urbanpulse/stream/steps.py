"""Pure processing steps, testable without Kafka or a database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from urbanpulse.core.envelope import DeadLetter, Reading, decode_readings, schema_header
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
    # Only this reading of the record (its index in it): a record of several readings that the
    # database refuses is retried reading by reading, so that only the one at fault is lost.
    part: int | None = None

    @property
    def source(self) -> str:
        return f"kafka:{self.topic}/{self.partition}@{self.offset}"

    @property
    def schema(self) -> bytes | None:
        """The ``schema`` header, if the producer set one."""
        return schema_header(self.headers)


@dataclass
class Checked:
    accepted: list[Reading] = field(default_factory=list)
    to_register: list[SensorRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    pending_refused: int = 0  # readings of unknown sensors beyond the pending budget


def decode_record(
    record: ConsumedRecord, now: datetime, limits: RecordLimits
) -> tuple[list[Reading], list[DeadLetter]]:
    """A record's valid readings, and a dead letter for each bad one (named by its index in a
    record of several; its good siblings are kept), or one for the whole record when it holds
    no readings at all.  Never raises: the record may come from any producer.

    Each record is checked for its size, its ``schema`` header (a record without one is judged
    by its content alone), the envelope (:func:`urbanpulse.core.envelope.decode_readings`) and
    then each reading against the catalogue (:func:`urbanpulse.stream.validate.reading_problems`).
    """
    if len(record.value) > limits.max_bytes:
        reason = (
            f"record of {len(record.value)} bytes is larger than the {limits.max_bytes} bytes a "
            f"record of readings may take (first {limits.max_bytes} bytes kept)"
        )
        # Kept in part: a dead letter must itself fit in a Kafka record.
        return [], [_dead(record, reason, record.value[: limits.max_bytes], now)]
    try:
        unpacked = decode_readings(record.value, record.schema)
    except Exception as exc:  # the boundary with any producer: no record may stop us
        return [], [_dead(record, f"not a reading envelope: {exc}", record.value, now)]
    accepted: list[Reading] = []
    dead_letters: list[DeadLetter] = []
    for index, reading in unpacked.readings:
        if record.part is not None and index != record.part:
            continue
        problems = reading_problems(reading, now, limits)
        if not problems:
            accepted.append(reading)
        else:
            which = _which(index) if unpacked.several else ""
            # One of several readings is kept alone, as its own reading/1 envelope.
            raw = reading.to_json() if unpacked.several else record.value
            reasons = tuple(which + problem for problem in problems)
            dead_letters.append(DeadLetter(reasons, record.source, "stream", raw, now))
    for bad in unpacked.bad:
        if record.part is None or bad.index == record.part:
            reason = f"{_which(bad.index)}not a reading: {bad.reason}"
            dead_letters.append(_dead(record, reason, bad.raw or record.value, now))
    return accepted, dead_letters


def _which(index: int) -> str:
    return f"reading [{index}] of the record: "


def parts_of(record: ConsumedRecord) -> list[ConsumedRecord]:
    """The record as one record per reading it holds; itself when it holds one reading, or
    none that can be read."""
    try:
        unpacked = decode_readings(record.value, record.schema)
    except Exception:  # nothing to part: it is dead-lettered whole
        return [record]
    if not unpacked.several or unpacked.count == 1:
        return [record]
    return [replace(record, part=index) for index in range(unpacked.count)]


def _dead(record: ConsumedRecord, reason: str, raw: bytes, now: datetime) -> DeadLetter:
    return DeadLetter((_bounded(reason),), record.source, "stream", raw, now)


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
