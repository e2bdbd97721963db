"""One batch of the processor as a plan: what to store, derive, dead-letter and alert on.

The processor runs a batch in three steps (:mod:`urbanpulse.stream.processor`):

1. **decode** the records (:func:`decode`) and **load** what the database knows about them
   (:class:`Loaded`: the registry, the readings already stored, the pending budget, the alerts
   written since the last look);
2. **plan** (:func:`plan`): pure, no I/O and no clock, so a whole batch is testable without
   servers;
3. **store** the plan in one transaction, then keep its alert states.

The plan feeds the new air readings into their partitions' hourly windows (a cache of what is
stored: the processor drops it if the store step fails) and returns every partition's new alert
state, leaving the old ones untouched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from urbanpulse.alerts import engine
from urbanpulse.alerts.model import Alert, AlertEvent
from urbanpulse.alerts.rules import RuleSet
from urbanpulse.core.envelope import DeadLetter, Reading
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.storage.registry import RegisteredSensor, SensorRecord
from urbanpulse.storage.writer import ReadingKey
from urbanpulse.stream.admission import PendingBudget
from urbanpulse.stream.alerting import observations
from urbanpulse.stream.derive import derive_indices
from urbanpulse.stream.partition_state import PartitionState, partition_for
from urbanpulse.stream.steps import ConsumedRecord, check_registry, decode_record
from urbanpulse.stream.validate import RecordLimits


@dataclass(frozen=True)
class Decoded:
    # (home partition, reading) of the records' valid readings, in the order they came: the
    # registry's budget of pending sensors goes to the first unknown sensors to arrive.
    readings: list[tuple[int, Reading]]
    dead_letters: list[DeadLetter]  # records, or readings of a record, that are no valid reading

    def all_readings(self) -> list[Reading]:
        return [r for _, r in self.readings]


def decode(
    records: Iterable[ConsumedRecord],
    now: datetime,
    limits: RecordLimits,
    partitions: int,
    owned: Collection[int],
) -> Decoded:
    """The records' readings, each filed under its sensor's home partition: the one its id maps
    to (where the bridge sends it; ``partitions``: the topic's count) when owned, else the
    one it came through.  Another producer may write a sensor anywhere; its state still lives
    where staleness checks and rebalances look for it."""
    readings: list[tuple[int, Reading]] = []
    dead_letters: list[DeadLetter] = []
    for record in records:
        accepted, dead = decode_record(record, now, limits)
        if accepted:
            # A record's readings are one sensor's (the envelope states its id once).
            home = partition_for(accepted[0].sensor_id, partitions)
            filed = home if home in owned else record.partition
            readings += [(filed, reading) for reading in accepted]
        dead_letters += dead
    return Decoded(readings, dead_letters)


@dataclass(frozen=True)
class Loaded:
    """What the database said about a batch (read in the transaction that stores it)."""

    known: Mapping[str, RegisteredSensor]  # the batch's registered sensors
    stored: frozenset[ReadingKey]  # the batch's readings stored before (replays)
    budget: PendingBudget  # how many unknown sensors may be registered as pending
    changed: Sequence[Alert] = ()  # alerts written since the last look (operators' among them)


@dataclass(frozen=True)
class PlanSettings:
    """The settings a plan depends on."""

    rules: RuleSet  # the per-sensor rules (area rules are their owners', on the timer)
    provisioning: Literal["pending", "reject"]
    combination: Combination


@dataclass
class Plan:
    to_register: list[SensorRecord] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)  # new: to store, derived, observed
    derived: dict[ReadingKey, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0  # readings stored before or repeated in the batch
    by_operators: list[AlertEvent] = field(default_factory=list)  # stored: only announced
    raised: list[AlertEvent] = field(default_factory=list)  # to store and announce
    alerts: dict[int, engine.EngineState] = field(default_factory=dict)  # partition -> state
    undecodable: list[DeadLetter] = field(default_factory=list)
    refused: list[DeadLetter] = field(default_factory=list)  # by the registry
    pending_refused: int = 0  # of those: unknown sensors beyond the pending budget

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return self.undecodable + self.refused


def plan(
    decoded: Decoded,
    loaded: Loaded,
    states: Mapping[int, PartitionState],
    settings: PlanSettings,
    now: datetime,
) -> Plan:
    """Decide a batch: ``states`` holds every partition assigned (operators' changes reach
    them all), ``decoded`` those of the batch, each of which must be among them."""
    partition_of = {id(r): p for p, r in decoded.readings}
    checked = check_registry(
        decoded.all_readings(), loaded.known, settings.provisioning, now, loaded.budget
    )
    accepted: dict[int, list[Reading]] = {}
    for reading in checked.accepted:
        accepted.setdefault(partition_of[id(reading)], []).append(reading)
    result = Plan(
        to_register=checked.to_register,
        undecodable=decoded.dead_letters,
        refused=checked.dead_letters,
        pending_refused=checked.pending_refused,
    )
    seen: set[ReadingKey] = set(loaded.stored)
    for partition, state in states.items():
        alerts = state.alerts
        if loaded.changed:
            alerts, merged = engine.merge_operator_changes(alerts, loaded.changed)
            result.by_operators += merged
        fresh = _fresh(accepted.get(partition, []), seen)
        if fresh:
            derived = derive_indices(fresh, state.windows, settings.combination)
            observed = observations(fresh, derived, loaded.known, state.windows, settings.rules)
            alerts, raised = engine.evaluate_batch(alerts, observed, settings.rules, now)
            result.readings += fresh
            result.derived.update(derived)
            result.raised += raised
        result.alerts[partition] = alerts
    result.duplicates = len(checked.accepted) - len(result.readings)
    return result


def _fresh(readings: Iterable[Reading], seen: set[ReadingKey]) -> list[Reading]:
    """Drop replays (stored before) and repeats within the batch: each is derived once."""
    fresh = []
    for reading in readings:
        key = (reading.sensor_id, reading.ts)
        if key not in seen:
            seen.add(key)
            fresh.append(reading)
    return fresh
