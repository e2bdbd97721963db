from __future__ import annotations

from datetime import UTC, datetime

from urbanpulse.core.catalogue import get_kind
from urbanpulse.simulators.air import AirSensorModel, rush_hour_factor
from urbanpulse.simulators.fleet import CENTRAL_HCMC, place_sensors

# 08:00 and 03:00 in Ho Chi Minh City (UTC+7).
RUSH = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)


def test_fleet_is_deterministic_and_inside_central_hcmc() -> None:
    fleet = place_sensors("air", 30, seed=7)
    assert fleet == place_sensors("air", 30, seed=7)
    assert fleet != place_sensors("air", 30, seed=8)
    assert len({s.sensor_id for s in fleet}) == 30
    for s in fleet:
        assert CENTRAL_HCMC.south <= s.lat <= CENTRAL_HCMC.north
        assert CENTRAL_HCMC.west <= s.lon <= CENTRAL_HCMC.east


def test_air_values_are_deterministic_and_inside_the_catalogue_ranges() -> None:
    sensor = place_sensors("air", 1, seed=1)[0]
    first = [AirSensorModel(sensor, 1).values_at(RUSH) for _ in range(2)]
    assert first[0] == first[1]
    air = get_kind("air")
    model = AirSensorModel(sensor, 1)
    for hour in range(24):
        values = model.values_at(NIGHT.replace(hour=hour))
        assert set(values) == set(air.by_name)
        for name, value in values.items():
            assert type(value) is float  # plain floats: payloads are serialised as JSON
            assert air.by_name[name].problem_with(value) is None


def test_rush_hour_is_dirtier_than_the_night() -> None:
    assert rush_hour_factor(7.5) > 1.7 > 1.05 > rush_hour_factor(3.0)
    sensor = place_sensors("air", 1, seed=1)[0]
    model = AirSensorModel(sensor, 1)
    rush = sum(model.values_at(RUSH)["pm25"] for _ in range(50))
    night = sum(model.values_at(NIGHT)["pm25"] for _ in range(50))
    assert rush > 1.4 * night
