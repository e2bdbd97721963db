"""What travels between the parts: the Reading envelope and the dead-letter record.

On Kafka's readings topic a record is keyed by sensor id (so one sensor's readings stay ordered
in one partition), its value is JSON and its header ``schema`` names the envelope:

- ``readings/2`` (what the bridge writes): the readings of one MQTT message, which all come
  from one sensor, with what they share stated once and each reading's own fields in a list::

      {"sensor_id": "hcm-air-0001", "kind": "air", "source": "urbanpulse/v1/air/hcm-air-0001/data",
       "received_at": "2026-11-22T01:00:00.123456Z", "location": [106.7, 10.78] | null,
       "readings": [{"ts": "2026-11-22T00:59:00Z", "values": {"pm25": 35.2}, "seq": 12}, ...]}

  (``seq`` is left out when the payload gave none).  Per-record costs (a Kafka record, its
  header, a JSON document and the shared fields' parsing) are paid once per message, not once
  per reading: with gateways that batch, most of the bridge's and processor's decoding time
  went there.
- ``reading/1``: one reading per record (:meth:`Reading.to_json`), as older bridges wrote
  them; still read, and written by hand and by tests.

:func:`decode_readings` reads either (or a record without the header, by its content); every
consumer of the readings topic uses it.
"""

from __future__ import annotations

import base64
import hashlib
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from urbanpulse.core.times import NO_UTC_DATE, in_utc
from urbanpulse.core.untrusted import is_number, preview

READING_SCHEMA = b"reading/1"
READINGS_SCHEMA = b"readings/2"
DEADLETTER_SCHEMA = b"deadletter/1"
READING_SCHEMAS = (READING_SCHEMA, READINGS_SCHEMA)


class EnvelopeError(ValueError):
    """A Kafka record that is not a valid envelope."""


@dataclass(frozen=True, slots=True)
class Reading:
    sensor_id: str
    kind: str
    ts: datetime  # event time, UTC, as the device stated it
    values: dict[str, float]  # canonical units, keys are catalogue metric names
    received_at: datetime  # when the platform first saw it
    source: str  # where it entered, e.g. the MQTT topic
    seq: int | None = None
    # (lon, lat) in WGS 84 when the payload stated where the device is: it places a sensor
    # that is not registered yet.  The registry, not the payload, is the authority otherwise.
    location: tuple[float, float] | None = None

    def to_json(self) -> bytes:
        """The ``reading/1`` envelope of this reading alone."""
        return orjson.dumps(
            {
                "sensor_id": self.sensor_id,
                "kind": self.kind,
                "ts": self.ts,
                "values": self.values,
                "received_at": self.received_at,
                "source": self.source,
                "seq": self.seq,
                "location": self.location,
            },
            option=orjson.OPT_UTC_Z,
        )

    @classmethod
    def from_json(cls, data: bytes) -> Reading:
        """The ``reading/1`` envelope in ``data``; :class:`EnvelopeError` for anything else.

        Every field is type-checked before use: a record from another producer is untrusted, and
        ``str()`` of a deeply nested value would recurse until ``RecursionError``.
        """
        return _one(_object(data))


# What a ``readings/2`` record states once for all its readings.
_SHARED = operator.attrgetter("sensor_id", "kind", "source", "received_at", "location")


def readings_records(readings: Sequence[Reading], max_bytes: int) -> list[bytes]:
    """``readings/2`` values of ``readings``, in order: a record per run of readings that share
    sensor, kind, source, receipt and location, cut into several where one would be larger than
    ``max_bytes`` (a single reading is never cut, whatever its size)."""
    values: list[bytes] = []
    start, shared = 0, _SHARED(readings[0]) if readings else None
    for end in range(1, len(readings) + 1):
        following = _SHARED(readings[end]) if end < len(readings) else None
        if following != shared:  # the run from start ends here
            values += _cut(readings[start:end], max_bytes)
            start, shared = end, following
    return values


def _cut(readings: Sequence[Reading], max_bytes: int) -> list[bytes]:
    value = _readings_record(readings)
    if len(value) <= max_bytes or len(readings) == 1:
        return [value]
    # Parts of about equal size, each re-checked (their readings' sizes may differ).
    pieces = -(-len(value) // max_bytes)
    size = -(-len(readings) // pieces)
    return [
        cut
        for start in range(0, len(readings), size)
        for cut in _cut(readings[start : start + size], max_bytes)
    ]


def _readings_record(readings: Sequence[Reading]) -> bytes:
    first = readings[0]
    return orjson.dumps(
        {
            "sensor_id": first.sensor_id,
            "kind": first.kind,
            "source": first.source,
            "received_at": first.received_at,
            "location": first.location,
            "readings": [
                {"ts": r.ts, "values": r.values}
                if r.seq is None
                else {"ts": r.ts, "values": r.values, "seq": r.seq}
                for r in readings
            ],
        },
        option=orjson.OPT_UTC_Z,
    )


@dataclass(frozen=True, slots=True)
class BadReading:
    """A reading of a ``readings/2`` record that is no valid reading, while the record is."""

    index: int  # in the record's list
    reason: str
    raw: bytes | None  # the reading's JSON; None when it cannot be written back (too deep)


@dataclass(frozen=True, slots=True)
class RecordReadings:
    """What one record of the readings topic holds, by each reading's index in the record."""

    readings: list[tuple[int, Reading]]
    bad: list[BadReading]
    several: bool  # a readings/2 record (its readings are named by index)

    @property
    def count(self) -> int:
        return len(self.readings) + len(self.bad)


def schema_header(headers: Iterable[tuple[str, bytes]]) -> bytes | None:
    """The ``schema`` header of a record's headers, if its producer set one."""
    return next((value for key, value in headers if key == "schema"), None)


def decode_readings(value: bytes, schema: bytes | None = None) -> RecordReadings:
    """The readings of a record on the readings topic, by its ``schema`` header (None: the
    record had none, so its content decides); :class:`EnvelopeError` when the record as a whole
    is not one (header, JSON, or the fields its readings share).  A bad reading in a good
    ``readings/2`` record is listed in ``bad``, apart from its good siblings.
    """
    if schema is not None and schema not in READING_SCHEMAS:
        raise EnvelopeError(
            f"schema header {preview(schema)} is neither {READING_SCHEMA.decode()} nor "
            f"{READINGS_SCHEMA.decode()}"
        )
    obj = _object(value)
    if schema == READINGS_SCHEMA or (schema is None and "readings" in obj):
        return _several(obj)
    return RecordReadings([(0, _one(obj))], [], False)


def _object(data: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EnvelopeError(f"{preview(obj)} is not an object")
    return obj


def _one(obj: dict[str, Any]) -> Reading:
    return Reading(
        sensor_id=_text(obj, "sensor_id"),
        kind=_text(obj, "kind"),
        ts=_utc(obj.get("ts")),
        values=_values(obj),
        received_at=_utc(obj.get("received_at")),
        source=_text(obj, "source", default=""),
        seq=_seq(obj),
        location=_location(obj.get("location")),
    )


def _several(obj: dict[str, Any]) -> RecordReadings:
    parts = obj.get("readings")
    if not isinstance(parts, list) or not parts:
        raise EnvelopeError(f"readings {preview(parts)} is not a non-empty array")
    sensor_id, kind = _text(obj, "sensor_id"), _text(obj, "kind")
    source = _text(obj, "source", default="")
    received_at = _utc(obj.get("received_at"))
    location = _location(obj.get("location"))
    good: list[tuple[int, Reading]] = []
    bad: list[BadReading] = []
    for index, part in enumerate(parts):
        try:
            if not isinstance(part, dict):
                raise EnvelopeError(f"reading {preview(part)} is not an object")
            reading = Reading(
                sensor_id,
                kind,
                _utc(part.get("ts")),
                _values(part),
                received_at,
                source,
                _seq(part),
                location,
            )
        except EnvelopeError as exc:
            bad.append(BadReading(index, str(exc), _json_or_none(part)))
        else:
            good.append((index, reading))
    return RecordReadings(good, bad, True)


def _json_or_none(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return None


def _values(obj: dict[str, Any]) -> dict[str, float]:
    values = obj.get("values")
    if not isinstance(values, dict) or not all(is_number(v) for v in values.values()):
        raise EnvelopeError("values must map metric names to numbers")
    return {k: float(v) for k, v in values.items()}


def _seq(obj: dict[str, Any]) -> int | None:
    seq = obj.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise EnvelopeError(f"seq {preview(seq)} is not an integer")
    return seq


def _text(obj: dict[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise EnvelopeError(f"{key} {preview(value)} is not a string")
    return value


def _location(raw: Any) -> tuple[float, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 2 or not all(is_number(c) for c in raw):
        raise EnvelopeError(f"location {preview(raw)} is not [lon, lat]")
    return float(raw[0]), float(raw[1])


def _utc(text: Any) -> datetime:
    if not isinstance(text, str):
        raise EnvelopeError(f"timestamp {preview(text)} is not an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise EnvelopeError(f"timestamp {preview(text)} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise EnvelopeError(f"timestamp {preview(text)} has no offset")
    utc = in_utc(parsed)
    if utc is None:
        raise EnvelopeError(f"timestamp {preview(text)} {NO_UTC_DATE}")
    return utc


# Kafka's default limits are 1,048,576 bytes for a produce request (the client's
# max_request_size) and 1,048,588 for a record batch (the broker's message.max.bytes): a dead
# letter's value stays below this, leaving room for its key, headers and the batch framing.
MAX_DEAD_LETTER_BYTES = 1_000_000
# orjson writes a control character as \u00XX: six bytes per character at worst.
_MAX_JSON_BYTES_PER_CHAR = 6
_FIXED_FIELDS_BYTES = 1024  # keys, timestamp, size, hash, flags, the count of omitted reasons
_OMITTED = "… and {n} more reasons"
_SEPARATOR_CHARS = 4  # between reasons: "; " when joined, '", "' in the list


@dataclass(frozen=True, slots=True)
class DeadLetterLimits:
    """How much of a rejected input a dead letter keeps; its JSON fits Kafka whatever the input."""

    raw_prefix_bytes: int = 64 * 1024
    max_reasons: int = 50
    reason_chars: int = 500
    source_chars: int = 300

    def __post_init__(self) -> None:
        if min(self.raw_prefix_bytes, self.max_reasons, self.reason_chars, self.source_chars) < 1:
            raise ValueError("dead-letter limits must be positive")
        if (worst := self.worst_case_json_bytes()) > MAX_DEAD_LETTER_BYTES:
            raise ValueError(
                f"dead-letter limits allow {worst} bytes of JSON, more than the "
                f"{MAX_DEAD_LETTER_BYTES} that Kafka accepts by default"
            )

    def worst_case_json_bytes(self) -> int:
        """An upper bound of ``len(to_json())``: every character escaped, raw in base64."""
        # Reasons appear twice: as the list, and joined (with the omitted count) as ``reason``.
        reasons = 2 * self.max_reasons * (self.reason_chars + _SEPARATOR_CHARS)
        omitted_note = len(_OMITTED.format(n=2**64))
        text_chars = reasons + omitted_note + 2 * self.source_chars  # source and stage
        base64_bytes = 4 * ((self.raw_prefix_bytes + 2) // 3)
        return _MAX_JSON_BYTES_PER_CHAR * text_chars + base64_bytes + _FIXED_FIELDS_BYTES


DEAD_LETTER_LIMITS = DeadLetterLimits()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input with the reasons, so that nothing is silently lost.

    In memory it holds the whole payload; on Kafka (``to_json``) it is bounded by
    :class:`DeadLetterLimits`: the first ``raw_prefix_bytes`` of the payload with the size and
    SHA-256 of the whole, and the first ``max_reasons`` reasons, each cut to ``reason_chars``,
    with the count of the others.  A payload of megabytes, of control bytes or of thousands of
    problems so still makes a record Kafka accepts.  ``from_json`` gives back what was kept:
    ``raw`` is then the prefix, while ``raw_size`` and ``raw_sha256`` still describe the whole.
    """

    reasons: tuple[str, ...]
    source: str  # MQTT topic, or "kafka:<topic>/<partition>@<offset>"
    stage: str  # "ingest" or "stream"
    raw: bytes
    at: datetime
    raw_size: int = -1  # bytes in the whole payload; -1: len(raw), filled in on construction
    raw_sha256: str = ""  # hex SHA-256 of the whole payload; "": computed on construction
    reasons_omitted: int = 0  # reasons the record no longer lists

    def __post_init__(self) -> None:
        # Frozen: fill in the derived fields the only way a frozen dataclass allows.
        if self.raw_size < 0:
            object.__setattr__(self, "raw_size", len(self.raw))
        if not self.raw_sha256:
            object.__setattr__(self, "raw_sha256", hashlib.sha256(self.raw).hexdigest())

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def raw_truncated(self) -> bool:
        return len(self.raw) < self.raw_size

    def to_json(self, limits: DeadLetterLimits = DEAD_LETTER_LIMITS) -> bytes:
        kept = [_bounded_text(r, limits.reason_chars) for r in self.reasons[: limits.max_reasons]]
        omitted = self.reasons_omitted + max(0, len(self.reasons) - limits.max_reasons)
        shown = [*kept, _OMITTED.format(n=omitted)] if omitted else kept
        raw = _utf8_prefix(self.raw, limits.raw_prefix_bytes)
        raw_text, encoding = _raw_as_text(raw)
        return orjson.dumps(
            {
                "reason": "; ".join(shown),
                "reasons": kept,
                "reasons_omitted": omitted,
                "source": _bounded_text(self.source, limits.source_chars),
                "stage": _bounded_text(self.stage, limits.source_chars),
                "at": self.at,
                "raw": raw_text,
                "raw_encoding": encoding,
                "raw_size": self.raw_size,
                "raw_sha256": self.raw_sha256,
                "raw_truncated": len(raw) < self.raw_size,
            },
            option=orjson.OPT_UTC_Z,
        )

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        obj = orjson.loads(data)
        raw_text: str = obj["raw"]
        raw = (
            base64.b64decode(raw_text)
            if obj["raw_encoding"] == "base64"
            else raw_text.encode("utf-8")
        )
        return cls(
            tuple(obj["reasons"]),
            obj["source"],
            obj["stage"],
            raw,
            _utc(obj["at"]),
            raw_size=obj.get("raw_size", len(raw)),
            raw_sha256=obj.get("raw_sha256", ""),
            reasons_omitted=obj.get("reasons_omitted", 0),
        )


def _bounded_text(text: str, limit: int) -> str:
    """At most ``limit`` characters; lone surrogates (which JSON cannot carry) replaced."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return cut.encode("utf-8", "replace").decode("utf-8")


def _utf8_prefix(raw: bytes, limit: int) -> bytes:
    """The first ``limit`` bytes, moved back (at most 3 bytes) so as not to split a character."""
    end = min(limit, len(raw))
    while end < len(raw) and end > limit - 3 and raw[end] & 0xC0 == 0x80:
        end -= 1  # raw[end] continues a UTF-8 sequence: cut before the sequence starts
    return raw[:end]


def _raw_as_text(raw: bytes) -> tuple[str, str]:
    """Valid UTF-8 stays readable text unless escaping (control bytes: 6x) makes it larger
    than base64 (4/3x); anything else is base64.  Either way the size stays bounded."""
    as_base64 = base64.b64encode(raw).decode("ascii")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return as_base64, "base64"
    if len(orjson.dumps(text)) - 2 > len(as_base64):
        return as_base64, "base64"
    return text, "utf-8"
