"""Deliberate gateway faults, decided per message as a pure function of (seed, sensor, message).

Real gateways resend (duplicates), deliver out of order and late after a lost connection,
run with wrong clocks, send garbage and go silent.  The engine asks this module which faults
strike a message; the decision never depends on what was sent before, so any window of a run
can be recomputed on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from urbanpulse.simulators import noise
from urbanpulse.simulators.scenario import Faults

FAULT_TYPES = ("duplicate", "out_of_order", "late", "clock_skew", "malformed", "burst", "silent")


@dataclass(frozen=True)
class Verdict:
    malformed: bool = False
    duplicate: bool = False
    out_of_order: bool = False
    late: bool = False


def decide(faults: Faults, seed: int, sensor: str, group: int) -> Verdict:
    """Which faults strike message ``group`` of ``sensor`` (at most one delay per message)."""

    def hit(name: str, rate: float) -> bool:
        return rate > 0 and noise.uniform(seed, "fault", name, sensor, group) < rate

    if hit("malformed", faults.malformed):
        return Verdict(malformed=True)
    late = hit("late", faults.late)
    return Verdict(
        duplicate=hit("duplicate", faults.duplicate),
        late=late,
        out_of_order=not late and hit("out_of_order", faults.out_of_order),
    )


def malformed_payload(seed: int, *key: object, ts: datetime | None = None) -> bytes:
    """A payload the platform must dead-letter: it carries no storable reading at all."""
    variant = int(noise.uniform(seed, "malformed", *key) * 6)
    stamp = ts.isoformat() if ts is not None else "2026-01-01T00:00:00+00:00"
    payloads: Sequence[bytes] = (
        b'{"ts": "' + stamp.encode() + b'", "values": {"pm25": 1',  # truncated JSON
        b"\xff\xfe\x00garbage\x00from a confused gateway",  # not even text
        orjson.dumps({"values": {"x": 1}}),  # no timestamp
        orjson.dumps({"ts": stamp, "values": "42"}),  # values not an object
        orjson.dumps({"ts": "yesterday-ish", "values": {}}),  # no time, no values
        b"[]",  # an empty batch
    )
    return payloads[variant]
