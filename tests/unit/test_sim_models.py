"""Device models: deterministic per seed, inside the catalogue's ranges, with promised shapes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from urbanpulse.core.catalogue import get_kind
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.conditions import Conditions
from urbanpulse.simulators.engine import DeviceModel
from urbanpulse.simulators.fleet import SimulatedSensor, areas_of_city, sample_points
from urbanpulse.simulators.traffic import TrafficCameraModel
from urbanpulse.simulators.waste import BinModel, Stop, TruckModel, distance_m
from urbanpulse.simulators.water import WaterSensorModel

# Local midnight in Vietnam (UTC+7) on 23 November 2026.
MIDNIGHT = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def local(hour: float) -> datetime:
    return MIDNIGHT + timedelta(hours=hour)


def sensor(kind: str, index: int = 0) -> SimulatedSensor:
    return SimulatedSensor(f"t-{kind}-{index:04d}", kind, 10.776, 106.700, index)


def models(seed: int) -> list[DeviceModel]:
    stops = [Stop(10.78, 106.70), Stop(10.77, 106.69), Stop(10.775, 106.71)]
    return [
        AirSensorModel(sensor("air"), seed),
        WaterSensorModel(sensor("water"), seed),
        BinModel(sensor("waste_bin"), seed, 4.0),
        TruckModel(sensor("waste_truck"), seed, stops),
        TrafficCameraModel(sensor("traffic_camera"), seed),
    ]


@pytest.mark.parametrize("index", range(5))
def test_models_are_deterministic_and_inside_the_catalogue(index: int) -> None:
    a, b, c = models(1)[index], models(1)[index], models(2)[index]
    kind = get_kind(a.sensor.kind)
    differs = False
    for step in range(0, 48 * 60, 17):
        ts = local(step / 60)
        values = a.values_at(ts)
        assert values == b.values_at(ts) == a.values_at(ts)  # pure: same instant, same values
        differs |= values != c.values_at(ts)
        assert set(values) == set(kind.by_name)
        for name, value in values.items():
            assert type(value) is float
            assert kind.by_name[name].problem_with(value) is None, (name, value)
    assert differs or kind.name == "waste_truck"


def hourly(
    model: DeviceModel, metric: str, hour: float, conditions: Conditions | None = None
) -> float:
    samples = [
        model.values_at(local(hour + m / 60), conditions or Conditions())[metric]
        for m in range(0, 60, 2)
    ]
    return sum(samples) / len(samples)


def test_air_rush_hour_is_dirtier_than_the_night_and_rain_washes_pm_down() -> None:
    model = AirSensorModel(sensor("air"), 3)
    assert hourly(model, "pm25", 7.5) > 1.5 * hourly(model, "pm25", 3)
    assert hourly(model, "no2", 17.5) > 1.5 * hourly(model, "no2", 3)
    rain = Conditions(rain=1.0)
    assert hourly(model, "pm25", 8, rain) < 0.6 * hourly(model, "pm25", 8)
    assert hourly(model, "pm25", 8, Conditions(pollution=4)) > 3 * hourly(model, "pm25", 8)


def test_water_do_is_lower_at_night_and_a_plume_raises_bod() -> None:
    model = WaterSensorModel(sensor("water"), 3)
    assert hourly(model, "do", 4) < 0.8 * hourly(model, "do", 14)
    plume = Conditions(plume=1.0)
    assert hourly(model, "bod5", 10, plume) > 3 * hourly(model, "bod5", 10)
    assert hourly(model, "nh4_n", 10, plume) > 3 * hourly(model, "nh4_n", 10)
    assert hourly(model, "do", 10, plume) < 0.5 * hourly(model, "do", 10)


def test_bin_fills_then_resets_on_collection_and_overflows_and_burns() -> None:
    model = BinModel(sensor("waste_bin"), 3, 5.0, collections=(6.0,))
    fills = [model.values_at(local(h))["fill"] for h in (6.5, 9, 12, 15)]
    assert fills == sorted(fills) and fills[-1] > fills[0] + 20
    assert model.values_at(local(29.9))["fill"] > 50  # nearly a day later
    assert model.values_at(local(30.2))["fill"] < 10  # emptied at 06:00 the next day
    surge = Conditions(fill_surges=((local(7), local(10), 50.0),))
    assert model.values_at(local(10), surge)["fill"] == 100.0
    assert model.values_at(local(12), Conditions(fire=1.0))["temperature"] > 200


def test_truck_moves_along_its_route_and_loads_at_each_pickup() -> None:
    stops = [Stop(10.78, 106.70), Stop(10.77, 106.69), Stop(10.775, 106.71)]
    truck = TruckModel(sensor("waste_truck"), 3, stops, shifts=(5.0,))
    assert truck.values_at(local(4))["load"] == 0.0
    loads, positions = [], []
    for second in range(0, int(truck.round_s), 30):
        values = truck.values_at(local(5) + timedelta(seconds=second))
        loads.append(values["load"])
        positions.append((values["lat"], values["lon"]))
    assert loads == sorted(loads)  # load only rises during the round
    steps = sorted(set(loads))
    assert len(steps) == 1 + len(stops)  # once per pickup
    moved = sum(distance_m(a, b) for a, b in itertools.pairwise(positions))
    assert moved > 1000
    for stop in stops:  # it passes by every stop
        assert min(distance_m(p, (stop.lat, stop.lon)) for p in positions) < 50
    after = truck.values_at(local(5) + timedelta(seconds=truck.round_s + 60))
    assert after["load"] == 0.0 and (after["lat"], after["lon"]) == truck.depot


def test_bin_collection_hours_come_from_the_truck_round() -> None:
    stops = [Stop(10.78, 106.70), Stop(10.77, 106.69)]
    truck = TruckModel(sensor("waste_truck"), 3, stops, shifts=(5.0, 17.0))
    hours = truck.arrival_hours()
    assert sorted(hours) == [0, 1]
    assert all(5.0 < h[0] < 6.0 and 17.0 < h[1] < 18.0 for h in hours.values())


def test_traffic_is_mostly_motorbikes_and_occupancy_peaks_at_rush_hour() -> None:
    camera = TrafficCameraModel(sensor("traffic_camera"), 3)
    assert hourly(camera, "motorbike", 8) > 4 * hourly(camera, "car", 8)
    assert hourly(camera, "occupancy", 7.5) > 2 * hourly(camera, "occupancy", 3)
    assert hourly(camera, "avg_speed", 7.5) < hourly(camera, "avg_speed", 3)
    jam = Conditions(incident=2)
    values = camera.values_at(local(12), jam)
    assert values["incident"] == 2.0 and values["queue_length"] > 300
    assert hourly(camera, "avg_speed", 12, jam) < 0.5 * hourly(camera, "avg_speed", 12)
    v = camera.values_at(local(9))
    assert v["vehicles"] == sum(v[c] for c in ("motorbike", "car", "bus", "truck", "bicycle"))


def test_points_are_sampled_inside_the_ward_deterministically() -> None:
    ward = areas_of_city("hcmc")["vn-hcm-ward-ben-thanh"]
    points = sample_points(ward, 20, seed=4)
    assert points == sample_points(ward, 20, seed=4) != sample_points(ward, 20, seed=5)
    import shapely

    assert all(shapely.contains_xy(ward.geometry, lon, lat) for lat, lon in points)


def test_a_simulated_sensor_is_named_after_its_kinds_english_label() -> None:
    assert sensor("landfill", 2).display_name == "Simulated landfill sensor 2"
    assert sensor("incinerator").display_name == "Simulated incinerator sensor 0"
    assert sensor("waste_bin", 12).display_name == "Simulated waste bin sensor 12"
