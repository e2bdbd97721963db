"""The scenario engine: a pure function of (scenario, seed, simulated time) -> MQTT messages.

``ScenarioEngine(scenario, start, topic_root)`` places the fleet inside the shipped areas,
builds one device model per sensor and answers ``messages_between(t0, t1)``: every message
whose (simulated) publish time falls in [t0, t1), with its topic, payload and the faults that
shaped it.  Nothing here reads a clock or touches the network; the runner paces these windows
against wall time and publishes them.

Readings are taken on a fixed grid per sensor (``interval``, with a per-sensor phase), grouped
``batch`` at a time into one message published when the group's last reading is taken.  Faults
delay, duplicate, garble or silence messages; events change the conditions the models see.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from urbanpulse.simulators import noise
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.conditions import Conditions
from urbanpulse.simulators.faults import decide, malformed_payload
from urbanpulse.simulators.fleet import (
    CITY_PROVINCES,
    SimulatedSensor,
    areas_of_city,
    locate,
    points_on_road,
    sample_points,
)
from urbanpulse.simulators.incinerator import IncineratorModel
from urbanpulse.simulators.landfill import LandfillModel
from urbanpulse.simulators.scenario import (
    BinFire,
    BinOverflowWave,
    Burst,
    FacilityUpset,
    MalformedBurst,
    PollutionEpisode,
    Rain,
    Scenario,
    SensorOutage,
    TrafficIncident,
    WaterPlume,
    resolve_time,
)
from urbanpulse.simulators.traffic import ROADS, TrafficCameraModel
from urbanpulse.simulators.waste import BinModel, Stop, TruckModel, distance_m
from urbanpulse.simulators.water import WaterSensorModel
from urbanpulse.storage.registry import SensorRecord

DEFAULT_INTERVAL_S: Mapping[str, int] = {
    "air": 60,
    "water": 300,
    "waste_bin": 300,
    "waste_truck": 30,
    "traffic_camera": 60,
    "landfill": 300,
    "incinerator": 60,
}
FACILITY_KINDS = frozenset({"landfill", "incinerator"})
MAX_STOPS_PER_TRUCK = 12
RAMP = timedelta(minutes=10)


class DeviceModel(Protocol):
    sensor: SimulatedSensor

    def values_at(self, ts: datetime, conditions: Conditions = ...) -> dict[str, float]: ...


@dataclass(frozen=True)
class Outgoing:
    """One MQTT message to publish at simulated time ``at``."""

    at: datetime
    topic: str
    payload: bytes
    kind: str
    sensor_id: str
    fault: str | None = None  # why the message is unusual, if it is
    keys: tuple[tuple[str, datetime], ...] = ()  # (sensor_id, ts) of its storable readings
    retain: bool = False


@dataclass
class _Window:
    start: datetime
    end: datetime

    def strength(self, ts: datetime, ramp: timedelta = RAMP) -> float:
        """0 outside, rising linearly over ``ramp`` to 1, falling over ``ramp`` at the end."""
        if not self.start <= ts < self.end:
            return 0.0
        ramp_s = max(1.0, ramp.total_seconds())
        rise = (ts - self.start).total_seconds() / ramp_s
        fall = (self.end - ts).total_seconds() / ramp_s
        return min(1.0, rise, fall)


@dataclass
class _SensorPlan:
    sensor: SimulatedSensor
    model: DeviceModel
    interval_s: int
    phase_s: int
    name: str  # local name without the prefix, e.g. air-0003
    episodes: list[tuple[_Window, float, timedelta]] = field(default_factory=list)
    rains: list[tuple[_Window, float]] = field(default_factory=list)
    plumes: list[tuple[_Window, float]] = field(default_factory=list)
    surges: list[tuple[datetime, datetime, float]] = field(default_factory=list)
    fires: list[_Window] = field(default_factory=list)
    incidents: list[tuple[_Window, int]] = field(default_factory=list)
    upsets: list[tuple[_Window, float, timedelta]] = field(default_factory=list)
    outages: list[_Window] = field(default_factory=list)
    silent: bool = False
    skew: timedelta = timedelta(0)

    def conditions(self, ts: datetime) -> Conditions:
        pollution = 1.0
        for window, factor, ramp in self.episodes:
            pollution *= 1.0 + (factor - 1.0) * window.strength(ts, ramp)
        rain = max((w.strength(ts) * i for w, i in self.rains), default=0.0)
        plume = max(
            (w.strength(ts, timedelta(minutes=20)) * s for w, s in self.plumes), default=0.0
        )
        fire = max((w.strength(ts, timedelta(minutes=5)) for w in self.fires), default=0.0)
        incident = next((code for w, code in self.incidents if w.start <= ts < w.end), 0)
        upset = max((w.strength(ts, ramp) * s for w, s, ramp in self.upsets), default=0.0)
        return Conditions(pollution, rain, plume, tuple(self.surges), fire, incident, upset)

    def down(self, ts: datetime) -> bool:
        return self.silent or any(w.start <= ts < w.end for w in self.outages)


class ScenarioEngine:
    def __init__(
        self,
        scenario: Scenario,
        start: datetime,
        topic_root: str,
        *,
        prefix: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.start = start.astimezone(UTC).replace(microsecond=0)
        self.end = self.start + scenario.duration
        self.topic_root = topic_root.rstrip("/")
        self.prefix = prefix or scenario.prefix
        self.sensors = self._place()
        self._plans = self._build_plans()
        self._apply_events()
        self._by_name = {p.name: p for p in self._plans}
        gateway = scenario.gateway
        self.batch = gateway.batch
        self._max_delay = max(
            gateway.faults.late_by.total_seconds() if gateway.faults.late else 0.0,
            max((3.0 * p.interval_s * self.batch for p in self._plans), default=0.0),
        )

    # ----------------------------------------------------------------- the fleet

    def _place(self) -> list[SimulatedSensor]:
        counters: dict[str, int] = {}
        sensors: list[SimulatedSensor] = []
        areas = areas_of_city(self.scenario.city)
        for entry_index, entry in enumerate(self.scenario.fleet):
            salt = f"{entry_index}-{entry.kind}"
            if entry.road is not None:
                points = points_on_road(
                    ROADS[self.scenario.city][entry.road], entry.count, self.seed, salt
                )
            else:
                assert entry.area is not None
                points = sample_points(areas[entry.area], entry.count, self.seed, salt)
            located = locate(points)
            for (lat, lon), area_id in zip(points, located, strict=True):
                index = counters.get(entry.kind, 0)
                counters[entry.kind] = index + 1
                sensors.append(
                    SimulatedSensor(
                        f"{self.prefix}-{entry.kind}-{index:04d}",
                        entry.kind,
                        lat,
                        lon,
                        index,
                        area_id,
                        entry.road,
                    )
                )
        return sensors

    def _interval(self, sensor: SimulatedSensor) -> int:
        kind_index = 0
        for entry in self.scenario.fleet:
            if entry.kind != sensor.kind:
                continue
            if sensor.index < kind_index + entry.count:
                if entry.interval is not None:
                    return max(1, round(entry.interval.total_seconds()))
                break
            kind_index += entry.count
        return DEFAULT_INTERVAL_S[sensor.kind]

    def _build_plans(self) -> list[_SensorPlan]:
        models: dict[str, DeviceModel] = {}
        bins = [s for s in self.sensors if s.kind == "waste_bin"]
        trucks = [s for s in self.sensors if s.kind == "waste_truck"]
        served: dict[str, list[SimulatedSensor]] = {t.sensor_id: [] for t in trucks}
        for b in bins:  # each bin to its nearest truck's depot, while that truck has room
            for truck in sorted(trucks, key=lambda t: distance_m((t.lat, t.lon), (b.lat, b.lon))):
                if len(served[truck.sensor_id]) < MAX_STOPS_PER_TRUCK:
                    served[truck.sensor_id].append(b)
                    break
        collections: dict[str, list[float]] = {}
        for truck in trucks:
            draft = TruckModel(truck, self.seed, self._stops(truck, served[truck.sensor_id], {}))
            for stop_index, hours in draft.arrival_hours().items():
                if served[truck.sensor_id]:
                    collections[served[truck.sensor_id][stop_index].sensor_id] = hours
        for b in bins:
            area_id = b.area_id or ""
            rate = noise.between(1.5, 6.0, "fill-rate", area_id) * noise.between(
                0.8, 1.2, self.seed, "bin-rate", b.index
            )
            default = [18.0 + 5.0 * noise.uniform(self.seed, "bin-collection", b.index)]
            models[b.sensor_id] = BinModel(
                b, self.seed, rate, collections.get(b.sensor_id, default)
            )
        for truck in trucks:
            stops = self._stops(truck, served[truck.sensor_id], models)
            models[truck.sensor_id] = TruckModel(truck, self.seed, stops)
        plans = []
        for sensor in self.sensors:
            model = models.get(sensor.sensor_id) or self._model(sensor)
            interval = self._interval(sensor)
            phase = int(noise.uniform(self.seed, "phase", sensor.kind, sensor.index) * interval)
            name = f"{sensor.kind}-{sensor.index:04d}"
            plans.append(_SensorPlan(sensor, model, interval, phase, name))
        return plans

    def _stops(
        self,
        truck: SimulatedSensor,
        bins: Sequence[SimulatedSensor],
        models: Mapping[str, DeviceModel],
    ) -> list[Stop]:
        if bins:
            stops = []
            for b in bins:
                model = models.get(b.sensor_id)
                stops.append(Stop(b.lat, b.lon, model if isinstance(model, BinModel) else None))
            return stops
        areas = areas_of_city(self.scenario.city)
        area = areas.get(truck.area_id or "") or areas[CITY_PROVINCES[self.scenario.city]]
        points = sample_points(area, 8, self.seed, f"stops-{truck.index}")
        return [Stop(lat, lon) for lat, lon in points]

    def _model(self, sensor: SimulatedSensor) -> DeviceModel:
        if sensor.kind == "air":
            return AirSensorModel(sensor, self.seed)
        if sensor.kind == "water":
            return WaterSensorModel(sensor, self.seed)
        if sensor.kind == "traffic_camera":
            return TrafficCameraModel(sensor, self.seed, self._interval(sensor))
        if sensor.kind == "landfill":
            return LandfillModel(sensor, self.seed)
        if sensor.kind == "incinerator":
            return IncineratorModel(sensor, self.seed)
        raise ValueError(f"no model for kind {sensor.kind!r}")

    def records(self) -> list[SensorRecord]:
        """The fleet as registry records, to register before publishing."""
        return [
            SensorRecord(
                p.sensor.sensor_id,
                p.sensor.kind,
                p.sensor.lat,
                p.sensor.lon,
                p.sensor.display_name,
                metadata={
                    "simulated": True,
                    "scenario": self.scenario.name,
                    **({"road": p.sensor.road} if p.sensor.road else {}),
                },
            )
            for p in self._plans
        ]

    def sensor_id(self, name: str) -> str:
        """Full id of a sensor the scenario names locally (``air-0003``)."""
        return self._by_name[name].sensor.sensor_id

    def sensors_in(self, area_id: str | None, kind: str | None = None) -> list[str]:
        """Ids of the fleet's sensors inside an area (a province holds its whole city)."""
        province = CITY_PROVINCES[self.scenario.city]
        return [
            s.sensor_id
            for s in self.sensors
            if (kind is None or s.kind == kind)
            and (area_id is None or area_id == province or s.area_id == area_id)
        ]

    # ----------------------------------------------------------------- events

    def at(self, value: str) -> datetime:
        return resolve_time(value, self.start)

    def _apply_events(self) -> None:
        by_name = {p.name: p for p in self._plans}
        faults = self.scenario.gateway.faults
        for name in faults.silent:
            by_name[name].silent = True
        if faults.clock_skew is not None:
            offset = faults.clock_skew.offset * (1 if faults.clock_skew.ahead else -1)
            for name in faults.clock_skew.sensors:
                by_name[name].skew = offset
        for event in self.scenario.events:
            start = self.at(event.at)
            duration = getattr(event, "duration", timedelta(0))
            window = _Window(start, start + duration)
            area = getattr(event, "area", None)
            members = {sid for sid in self.sensors_in(area)}
            for plan in self._plans:
                inside = plan.sensor.sensor_id in members
                kind = plan.sensor.kind
                if isinstance(event, PollutionEpisode) and inside and kind == "air":
                    plan.episodes.append((window, event.factor, event.ramp))
                elif isinstance(event, Rain) and inside:
                    plan.rains.append((window, event.intensity))
                elif isinstance(event, WaterPlume) and inside and kind == "water":
                    plan.plumes.append((window, event.strength))
                elif isinstance(event, BinOverflowWave) and inside and kind == "waste_bin":
                    plan.surges.append((window.start, window.end, event.rate))
                elif isinstance(event, BinFire) and plan.name == event.sensor:
                    plan.fires.append(window)
                elif (
                    isinstance(event, FacilityUpset)
                    and kind in FACILITY_KINDS
                    and (plan.name == event.sensor or (event.sensor is None and inside))
                ):
                    plan.upsets.append((window, event.strength, event.ramp))
                elif isinstance(event, TrafficIncident) and plan.sensor.road == event.road:
                    plan.incidents.append((window, event.code))
                elif isinstance(event, SensorOutage) and (
                    plan.name in event.sensors
                    or (not event.sensors and inside and (event.kind is None or event.kind == kind))
                ):
                    plan.outages.append(window)

    # ----------------------------------------------------------------- messages

    def topic(self, kind: str, sensor_id: str, channel: str = "data") -> str:
        return f"{self.topic_root}/{kind}/{sensor_id}/{channel}"

    def messages_between(self, t0: datetime, t1: datetime) -> list[Outgoing]:
        """Every message published at simulated time in [t0, t1), in publishing order.

        Late and delayed messages due after the end are published at the end.
        """
        found: list[Outgoing] = []
        for plan in self._plans:
            found += self._sensor_messages(plan, t0, t1)
        found += self._event_messages(t0, t1)
        found.sort(key=lambda m: (m.at, m.sensor_id, m.fault or ""))
        return found

    def all_messages(self) -> list[Outgoing]:
        return self.messages_between(self.start, self.end + timedelta(seconds=1))

    def _ticks(self, plan: _SensorPlan, group: int) -> list[tuple[int, datetime]]:
        ticks = []
        for k in range(group * self.batch, (group + 1) * self.batch):
            ts = datetime.fromtimestamp(k * plan.interval_s + plan.phase_s, UTC)
            if self.start <= ts < self.end and not plan.down(ts):
                ticks.append((k, ts))
        return ticks

    def _sensor_messages(self, plan: _SensorPlan, t0: datetime, t1: datetime) -> Iterator[Outgoing]:
        if plan.silent:
            return
        span = plan.interval_s * self.batch
        low = max(t0 - timedelta(seconds=self._max_delay), self.start).timestamp()
        high = min(t1, self.end + timedelta(seconds=span)).timestamp()
        first = math.floor((low - plan.phase_s) / span) - 1
        last = math.floor((high - plan.phase_s) / span) + 1
        faults = self.scenario.gateway.faults
        sensor = plan.sensor
        topic = self.topic(sensor.kind, sensor.sensor_id)
        for group in range(first, last + 1):
            ticks = self._ticks(plan, group)
            if not ticks:
                continue
            verdict = decide(faults, self.seed, plan.name, group)
            at = ticks[-1][1]
            fault: str | None = None
            if verdict.late:
                at, fault = at + faults.late_by, "late"
            elif verdict.out_of_order:
                at, fault = at + timedelta(seconds=2.5 * span), "out_of_order"
            at = min(at, self.end)
            copies = [(at, fault)]
            if verdict.duplicate:
                copies.append((min(at + timedelta(seconds=1), self.end), "duplicate"))
            copies = [(when, f) for when, f in copies if t0 <= when < t1]
            if not copies:
                continue
            if verdict.malformed:
                payload = malformed_payload(self.seed, plan.name, group, ts=ticks[-1][1])
                keys: tuple[tuple[str, datetime], ...] = ()
                fault = "malformed"
                copies = [(when, "malformed") for when, _ in copies]
            else:
                payload, keys = self._payload(plan, ticks)
            skewed = fault is None and plan.skew != timedelta(0)
            for when, why in copies:
                yield Outgoing(
                    when,
                    topic,
                    payload,
                    sensor.kind,
                    sensor.sensor_id,
                    why or ("clock_skew" if skewed else None),
                    keys,
                )

    def _payload(
        self, plan: _SensorPlan, ticks: Sequence[tuple[int, datetime]]
    ) -> tuple[bytes, tuple[tuple[str, datetime], ...]]:
        items: list[dict[str, Any]] = []
        keys = []
        for k, ts in ticks:
            values = plan.model.values_at(ts, plan.conditions(ts))
            stamp = ts + plan.skew
            items.append({"ts": stamp, "values": values, "seq": k})
            keys.append((plan.sensor.sensor_id, stamp))
        document: Any = items if self.batch > 1 else items[0]
        return orjson.dumps(document, option=orjson.OPT_UTC_Z), tuple(keys)

    def _event_messages(self, t0: datetime, t1: datetime) -> Iterator[Outgoing]:
        for event_index, event in enumerate(self.scenario.events):
            if isinstance(event, Burst):
                plan = self._by_name[event.sensor]
                start = self.at(event.at)
                step = max(event.every, timedelta(milliseconds=1))
                for i in range(event.count):
                    ts = (
                        (start + i * step).replace(microsecond=0)
                        if step.total_seconds() >= 1
                        else start + i * step
                    )
                    if t0 <= ts < t1 and ts < self.end:
                        values = plan.model.values_at(ts, plan.conditions(ts))
                        payload = orjson.dumps(
                            {"ts": ts, "values": values}, option=orjson.OPT_UTC_Z
                        )
                        sensor = plan.sensor
                        yield Outgoing(
                            ts,
                            self.topic(sensor.kind, sensor.sensor_id),
                            payload,
                            sensor.kind,
                            sensor.sensor_id,
                            "burst",
                            ((sensor.sensor_id, ts),),
                        )
            elif isinstance(event, MalformedBurst):
                start = self.at(event.at)
                candidates = [p for p in self._plans if event.kind in (None, p.sensor.kind)]
                if not candidates:
                    continue
                for i in range(event.count):
                    when = start + timedelta(milliseconds=5 * i)
                    if not (t0 <= when < t1 and when < self.end):
                        continue
                    pick = candidates[
                        int(noise.uniform(self.seed, "garbage", event_index, i) * len(candidates))
                    ]
                    sensor = pick.sensor
                    yield Outgoing(
                        when,
                        self.topic(sensor.kind, sensor.sensor_id),
                        malformed_payload(self.seed, "burst", event_index, i, ts=when),
                        sensor.kind,
                        sensor.sensor_id,
                        "malformed",
                    )

    def status_messages(self, state: str, at: datetime) -> list[Outgoing]:
        """Retained device status (``online`` / ``offline``) for every sensor of the fleet."""
        return [
            Outgoing(
                at,
                self.topic(p.sensor.kind, p.sensor.sensor_id, "status"),
                orjson.dumps({"state": state, "ts": at}, option=orjson.OPT_UTC_Z),
                p.sensor.kind,
                p.sensor.sensor_id,
                retain=True,
            )
            for p in self._plans
        ]
