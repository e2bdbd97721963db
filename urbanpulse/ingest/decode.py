"""Decode and validate MQTT messages into Reading envelopes.  Pure: no I/O, no clock reads.

A message is one reading or an array of them, each either our own format
``{"ts": ..., "values": {...}, "units": {...}?, "seq": n?, "location": GeoJSON Point?}`` or a
FIWARE Smart Data Models entity (see ``fiware.py``).  Both become a :class:`Candidate`, and every
candidate is validated the same way against the kind catalogue.

Every problem is named precisely (which item, which field, what was wrong); the valid readings
and fields of a message are kept even when other parts of it are rejected.

Untrusted input is bounded before any work that grows with it: the payload's size before
parsing, the array's length and the nesting depth (checked iteratively) right after, and values
are shown in problems with ``preview`` (never ``repr``, which recurses and is unbounded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import orjson

from urbanpulse.core.catalogue import KINDS, SENSOR_ID_PATTERN, Kind
from urbanpulse.core.envelope import Reading
from urbanpulse.core.times import NO_UTC_DATE, in_utc
from urbanpulse.core.units import accepted_units, converter_for
from urbanpulse.core.untrusted import is_number, preview
from urbanpulse.core.vocabulary import Rejection
from urbanpulse.ingest.candidate import Candidate
from urbanpulse.ingest.fiware import candidate_from_entity, is_fiware_entity


@dataclass(frozen=True)
class TopicAddress:
    kind: str
    sensor_id: str
    channel: str  # "data" or "status"


@dataclass(frozen=True)
class DecodeRules:
    max_payload_bytes: int = 256 * 1024
    max_readings: int = 1000  # per message
    max_depth: int = 16  # nesting of arrays and objects
    max_future_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=30)
    # Zone for timestamps without an offset; None rejects them (their instant is unknown).
    naive_time_zone: tzinfo | None = None


@dataclass
class Decoded:
    readings: list[Reading] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # attributes deliberately not stored
    rejection: Rejection = Rejection.INVALID  # the class of the problems, if any

    @classmethod
    def rejected(cls, rejection: Rejection, problem: str) -> Decoded:
        return cls(problems=[problem], rejection=rejection)


CHANNELS = ("data", "status")
TOPIC_PREVIEW_CHARS = 120  # MQTT topics may be 64 KiB long
FIELD_NAME_CHARS = 40


def _field(name: str) -> str:
    """A payload's key as it appears in a problem: as is when short and printable."""
    return name if len(name) <= FIELD_NAME_CHARS and name.isprintable() else preview(name)


def parse_topic(topic_root: str, topic: str) -> TopicAddress | str:
    """The address in ``<root>/<kind>/<sensor_id>/<channel>``, or a reason why there is none."""
    prefix = topic_root.rstrip("/") + "/"
    parts = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
    if len(parts) == 3:
        kind, sensor_id, channel = parts
        if kind in KINDS and channel in CHANNELS and SENSOR_ID_PATTERN.fullmatch(sensor_id):
            return TopicAddress(kind, sensor_id, channel)
    return _topic_problem(prefix, topic)


def _topic_problem(prefix: str, topic: str) -> str:
    """Why ``topic`` is not an address: apart from ``parse_topic``, which runs per message,
    because ``preview`` of every valid topic showed in the bridge's profile."""
    expected = f"expected {prefix}<kind>/<sensor_id>/data"
    shown = preview(topic, TOPIC_PREVIEW_CHARS)
    if not topic.startswith(prefix):
        return f"topic {shown} is outside {prefix}; {expected}"
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 3:
        return f"topic {shown} has {len(parts)} levels after the root; {expected}"
    kind, sensor_id, channel = parts
    if kind not in KINDS:
        return f"topic {shown}: unknown kind {preview(kind)} (known: {', '.join(KINDS)})"
    if not SENSOR_ID_PATTERN.fullmatch(sensor_id):
        return f"topic {shown}: invalid sensor id {preview(sensor_id)}"
    return f"topic {shown}: unknown channel {preview(channel)}; {expected}"


def decode_message(
    topic_root: str, topic: str, payload: bytes, received_at: datetime, rules: DecodeRules
) -> Decoded | None:
    """Readings and problems of any message under the root; None for a device status message."""
    address = parse_topic(topic_root, topic)
    if isinstance(address, str):
        return Decoded.rejected(Rejection.TOPIC, address)
    if address.channel == "status":
        return None
    return decode_data(address, topic, payload, received_at, rules)


def decode_data(
    address: TopicAddress, topic: str, payload: bytes, received_at: datetime, rules: DecodeRules
) -> Decoded:
    if len(payload) > rules.max_payload_bytes:
        return Decoded.rejected(
            Rejection.OVERSIZE,
            f"payload of {len(payload)} bytes exceeds the limit of {rules.max_payload_bytes}",
        )
    try:
        # orjson refuses nesting deeper than 1024 itself, without recursing in Python.
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return Decoded.rejected(Rejection.MALFORMED, f"malformed JSON: {exc}")
    batched = isinstance(document, list)
    items = document if batched else [document]
    if len(items) > rules.max_readings:
        return Decoded.rejected(
            Rejection.TOO_MANY,
            f"array of {len(items)} readings exceeds the limit of {rules.max_readings} "
            "per message; send smaller batches",
        )
    brackets = payload.count(b"[") + payload.count(b"{")
    if nests_deeper_than(document, rules.max_depth, brackets):
        return Decoded.rejected(
            Rejection.TOO_DEEP, f"JSON nests deeper than the limit of {rules.max_depth} levels"
        )

    decoded = Decoded()
    if not items:
        decoded.problems.append("empty batch: the array holds no readings")
    kind = KINDS[address.kind]
    for index, item in enumerate(items):
        label = f"[{index}] " if batched else ""
        candidate = _candidate(item, address.kind)
        if isinstance(candidate, str):
            decoded.problems.append(label + candidate)
            continue
        reading = _validate(candidate, address, kind, topic, received_at, rules)
        decoded.problems.extend(label + p for p in candidate.problems)
        decoded.ignored.extend(candidate.ignored)
        if reading is not None:
            decoded.readings.append(reading)
    return decoded


_CONTAINERS = (dict, list)


def nests_deeper_than(document: Any, limit: int, brackets: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (``[]`` is one level), in a
    document ``orjson.loads`` returned from a payload holding ``brackets`` ``[`` and ``{``.

    Iterative, one level at a time, so that no depth of input can make it recurse.  Each level
    opens a bracket: once the levels walked plus the brackets not met yet fit in the limit,
    nothing deeper can exist and the walk stops.  A batch of readings so stops above its
    readings' values instead of looking at each of them (it showed in the bridge's profile).
    """
    level = [document] if type(document) in _CONTAINERS else []
    depth = seen = 0
    while level:
        depth += 1
        seen += len(level)
        if depth > limit:
            return True
        if depth + brackets - seen <= limit:
            return False
        below: list[Any] = []
        for value in level:
            children = value.values() if type(value) is dict else value
            below += [child for child in children if type(child) in _CONTAINERS]
        level = below
    return False


def _candidate(item: Any, kind: str) -> Candidate | str:
    """The item as a candidate reading, or why it cannot be one."""
    if not isinstance(item, dict):
        return f"reading must be a JSON object, got {type(item).__name__}"
    if is_fiware_entity(item):
        return candidate_from_entity(item, kind)
    units = item.get("units", {})
    candidate = Candidate(item.get("ts"), item.get("values"), seq=item.get("seq"))
    candidate.location = item.get("location")
    if isinstance(units, dict) and all(isinstance(u, str) for u in units.values()):
        candidate.units = units
    else:
        candidate.problems.append("units: must be an object of metric -> unit name")
    return candidate


def _validate(
    candidate: Candidate,
    address: TopicAddress,
    kind: Kind,
    topic: str,
    received_at: datetime,
    rules: DecodeRules,
) -> Reading | None:
    problems = candidate.problems
    ts = _parse_ts(candidate.ts, received_at, rules, problems)
    seq = _parse_seq(candidate.seq, problems)
    values = _parse_values(candidate, kind, problems)
    location = _parse_location(candidate.location, problems)
    if ts is None or not values:
        return None
    return Reading(
        sensor_id=address.sensor_id,
        kind=address.kind,
        ts=ts,
        values=values,
        received_at=received_at,
        source=topic,
        seq=seq,
        location=location,
    )


def _parse_ts(
    raw: Any, received_at: datetime, rules: DecodeRules, problems: list[str]
) -> datetime | None:
    ts: datetime | None = None
    if raw is None:
        problems.append("ts: missing (ISO 8601 with offset, or epoch milliseconds)")
    elif isinstance(raw, bool) or not isinstance(raw, str | int | float):
        problems.append(f"ts: {preview(raw)} is neither an ISO 8601 string nor epoch milliseconds")
    elif isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            problems.append(f"ts: {preview(raw)} is not an ISO 8601 timestamp")
        else:
            if parsed.tzinfo is None and rules.naive_time_zone is not None:
                parsed = parsed.replace(tzinfo=rules.naive_time_zone)
            if parsed.tzinfo is None:
                problems.append(f"ts: {preview(raw)} has no UTC offset, so its instant is unknown")
            else:
                ts = in_utc(parsed)
                if ts is None:
                    problems.append(f"ts: {preview(raw)} {NO_UTC_DATE}")
    else:
        ts = _from_epoch_ms(raw)
        if ts is None:
            problems.append(f"ts: {preview(raw)} is not a plausible epoch-milliseconds value")

    if ts is not None:
        if ts > received_at + rules.max_future_skew:
            problems.append(
                f"ts: {ts.isoformat()} is in the future (received {received_at.isoformat()})"
            )
            return None
        if ts < received_at - rules.max_age:
            problems.append(f"ts: {ts.isoformat()} is older than {rules.max_age.days} days")
            return None
    return ts


def _from_epoch_ms(raw: float) -> datetime | None:
    """None where no calendar date exists (the datetime range is years 1 to 9999)."""
    if not math.isfinite(raw):
        return None
    try:
        return datetime.fromtimestamp(raw / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _parse_seq(raw: Any, problems: list[str]) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < 2**63:
        problems.append(f"seq: {preview(raw)} is not a non-negative integer")
        return None
    return raw


def _parse_values(candidate: Candidate, kind: Kind, problems: list[str]) -> dict[str, float]:
    raw = candidate.values
    if not isinstance(raw, dict):
        problems.append(f"values: must be an object of metric -> number, got {preview(raw)}")
        return {}
    if not raw:
        problems.append("values: no metric given")
    values: dict[str, float] = {}
    # Most readings state no unit and no factor (FIWARE's species): then the value as sent is
    # canonical, and neither is looked up per value (it showed in the bridge's profile).
    units, factors = candidate.units, candidate.factors
    for name, value in raw.items():
        metric = kind.by_name.get(name)
        if metric is None:
            problems.append(
                f"values.{_field(name)}: unknown metric for kind {kind.name!r} "
                f"(known: {', '.join(kind.by_name)})"
            )
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"values.{name}: {preview(value)} is not a number")
            continue
        if not math.isfinite(value):
            problems.append(f"values.{name}: {value!r} is not a finite number")
            continue
        canonical = float(value)
        if units and (stated_unit := units.get(name)) is not None:
            convert = converter_for(metric.unit, stated_unit)
            if convert is None:
                problems.append(
                    f"values.{name}: unit {preview(stated_unit)} is not accepted for {name} "
                    f"(accepted: {', '.join(accepted_units(metric.unit))})"
                )
                continue
            canonical = convert(canonical)
        if factors:
            canonical *= factors.get(name, 1.0)
        if metric.integer and abs(canonical - round(canonical)) < 1e-9:
            canonical = float(round(canonical))
        if (problem := metric.problem_with(canonical)) is not None:
            problems.append(f"values.{problem}")
            continue
        values[name] = canonical
    return values


def _parse_location(raw: Any, problems: list[str]) -> tuple[float, float] | None:
    """(lon, lat) from a GeoJSON Point, or the middle vertex of a LineString (a road segment)."""
    if raw is None:
        return None
    coordinates = raw.get("coordinates") if isinstance(raw, dict) else None
    if isinstance(raw, dict) and raw.get("type") == "LineString" and isinstance(coordinates, list):
        coordinates = coordinates[len(coordinates) // 2] if coordinates else None
    elif not isinstance(raw, dict) or raw.get("type") != "Point":
        problems.append(f"location: {preview(raw)} is not a GeoJSON Point or LineString")
        return None
    if (
        not isinstance(coordinates, list)
        or len(coordinates) < 2
        or not all(is_number(c) for c in coordinates[:2])
        or not (-180 <= coordinates[0] <= 180 and -90 <= coordinates[1] <= 90)
    ):
        problems.append(f"location: coordinates {preview(coordinates)} are not WGS 84 lon, lat")
        return None
    return float(coordinates[0]), float(coordinates[1])
