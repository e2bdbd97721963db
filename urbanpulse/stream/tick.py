"""One tick of the processor's alert timer as a plan: what the database says -> which alerts
open or close, in which partition's state.

The timer (:meth:`urbanpulse.stream.alerting.AlertStage.on_timer`) runs a tick in three steps,
like a batch (:mod:`urbanpulse.stream.batch`):

1. **load** (:class:`TickLoaded`): the alerts written since the last look (operators'
   acknowledgements and resolutions among them) and, once the processor has caught up (a
   backlog is not silence), the active sensors that never reported and the latest stored
   readings that an area rule may count (:func:`area_query` says which);
2. **plan** (:func:`plan_tick`): pure, no I/O and no clock;
3. **store** the events in the tick's transaction, grouped into incidents under the groups'
   advisory locks, with their announcements in the outbox
   (:meth:`~urbanpulse.stream.alerting.AlertStage.apply`); keep the new states once it commits.

Who decides what, with several processors in one consumer group: a sensor's staleness (silent,
or never reported) belongs to the partition its id maps to, an area's rules to the partition its
area id maps to (:func:`partition_for`); a processor plans only the partitions it owns.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from urbanpulse.alerts import engine
from urbanpulse.alerts.model import Alert, AlertEvent
from urbanpulse.alerts.rules import RuleSet
from urbanpulse.stream.partition_state import partition_for


@dataclass(frozen=True)
class TickLoaded:
    """What the database said for one tick (read in the transaction that stores it)."""

    changed: Sequence[Alert] = ()  # alerts written since the last look
    caught_up: bool = False  # staleness and area rules only then: a backlog is not silence
    unheard: Mapping[str, engine.Unheard] | None = None  # None: no never-reported rule
    # sensor id -> its latest stored reading, for the sensors an area rule may count
    area_sensors: Mapping[str, engine.SensorSeen] = field(default_factory=dict)


@dataclass
class TickPlan:
    alerts: dict[int, engine.EngineState] = field(default_factory=dict)  # partition -> state
    by_operators: list[AlertEvent] = field(default_factory=list)  # stored: only announced
    raised: list[AlertEvent] = field(default_factory=list)  # to store and announce


def area_query(rules: RuleSet, now: datetime) -> tuple[list[str], datetime] | None:
    """The kinds area rules watch and the oldest receipt time they count, as a filter on the
    stored latest readings (None: no area rule).  A sensor outside it counts in no area
    rule's share, so an area without any sensor inside it gets no verdict either way: the
    tick loads only the areas where a verdict is possible."""
    area_rules = rules.area_rules
    if not area_rules:
        return None
    kinds = sorted({r.kind for r in area_rules})
    return kinds, now - max(r.area.fresh_within for r in area_rules if r.area is not None)


def plan_tick(
    states: Mapping[int, engine.EngineState],
    loaded: TickLoaded,
    rules: RuleSet,
    partitions: int,
    now: datetime,
) -> TickPlan:
    """Decide a tick for the partitions owned (``states``: partition -> its alert state; left
    untouched); ``partitions``: the topic's count, which maps sensors and areas to their
    owner.  Operators' changes reach every partition; staleness and area rules wait until the
    processor has caught up."""
    result = TickPlan()
    sensor_rules = rules.per_sensor()
    areas = owned_areas(loaded.area_sensors, partitions, states.keys()) if loaded.caught_up else {}
    for p, before in states.items():
        new, merged = engine.merge_operator_changes(before, loaded.changed)
        result.by_operators += merged
        if loaded.caught_up:
            owns = OwnedBy(p, partitions)
            new, events = engine.tick(new, sensor_rules, now, owns, loaded.unheard)
            result.raised += events
        if p in areas:
            evaluated, events = engine.evaluate_areas(
                engine.EngineState(new.tracks, areas[p]), rules, now
            )
            new = engine.EngineState(evaluated.tracks, new.sensors)
            result.raised += events
        result.alerts[p] = new
    return result


def owned_areas(
    sensors: Mapping[str, engine.SensorSeen], partitions: int, owned: Collection[int]
) -> dict[int, dict[str, engine.SensorSeen]]:
    """partition -> the stored sensors of the areas it owns (by area id), among ``owned``."""
    by_partition: dict[int, dict[str, engine.SensorSeen]] = {}
    for sensor_id, seen in sensors.items():
        if seen.area_id is None:
            continue
        p = partition_for(seen.area_id, partitions)
        if p in owned:
            by_partition.setdefault(p, {})[sensor_id] = seen
    return by_partition


@dataclass(frozen=True)
class OwnedBy:
    """Whether a sensor's id maps to ``partition``: its staleness is that partition's."""

    partition: int
    partitions: int

    def __call__(self, sensor_id: str) -> bool:
        return partition_for(sensor_id, self.partitions) == self.partition
