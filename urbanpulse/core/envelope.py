"""What travels between the parts: the Reading envelope and the dead-letter record.

On Kafka a reading is keyed by sensor id (so one sensor's readings stay ordered in one partition),
its value is JSON and its header ``schema`` names the envelope version.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

READING_SCHEMA = b"reading/1"
DEADLETTER_SCHEMA = b"deadletter/1"


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
        try:
            obj = orjson.loads(data)
            values = obj["values"]
            if not isinstance(values, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
            ):
                raise EnvelopeError("values must map metric names to numbers")
            seq = obj.get("seq")
            location = obj.get("location")
            return cls(
                sensor_id=str(obj["sensor_id"]),
                kind=str(obj["kind"]),
                ts=_utc(obj["ts"]),
                values={str(k): float(v) for k, v in values.items()},
                received_at=_utc(obj["received_at"]),
                source=str(obj.get("source", "")),
                seq=int(seq) if seq is not None else None,
                location=(float(location[0]), float(location[1])) if location else None,
            )
        except EnvelopeError:
            raise
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            IndexError,
        ) as exc:
            raise EnvelopeError(f"not a reading envelope: {exc}") from exc


def _utc(text: Any) -> datetime:
    parsed = datetime.fromisoformat(str(text))
    if parsed.tzinfo is None:
        raise EnvelopeError(f"timestamp {text!r} has no offset")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input, kept whole with the reasons so that nothing is silently lost."""

    reasons: tuple[str, ...]
    source: str  # MQTT topic, or "kafka:<topic>/<partition>@<offset>"
    stage: str  # "ingest" or "stream"
    raw: bytes
    at: datetime

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_json(self) -> bytes:
        try:
            raw_text, encoding = self.raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            raw_text, encoding = base64.b64encode(self.raw).decode("ascii"), "base64"
        return orjson.dumps(
            {
                "reason": self.reason,
                "reasons": list(self.reasons),
                "source": self.source,
                "stage": self.stage,
                "at": self.at,
                "raw": raw_text,
                "raw_encoding": encoding,
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
        return cls(tuple(obj["reasons"]), obj["source"], obj["stage"], raw, _utc(obj["at"]))
