from __future__ import annotations

from datetime import UTC, datetime, timedelta

from urbanpulse.core.catalogue import get_kind
from urbanpulse.core.envelope import Reading
from urbanpulse.storage.writer import column_arrays, columns_of, insert_sql, newest_per_sensor

T0 = datetime(2026, 11, 22, tzinfo=UTC)


def reading(sensor: str, minute: int, **values: float) -> Reading:
    return Reading(sensor, "air", T0 + timedelta(minutes=minute), values, T0, "t", None)


def test_columns_follow_the_catalogue() -> None:
    air = get_kind("air")
    names = [name for name, _ in columns_of(air)]
    assert names[:4] == ["sensor_id", "ts", "received_at", "seq"]
    assert names[4:] == [m.column for m in air.metrics] + ["vn_aqi", "vn_aqi_pollutant"]
    water = [name for name, _ in columns_of(get_kind("water"))]
    assert "dissolved_oxygen" in water and "do" not in water


def test_column_arrays_fill_missing_metrics_with_null() -> None:
    air = get_kind("air")
    arrays = column_arrays(air, [reading("a", 0, pm25=1.5), reading("b", 1, no2=2)])
    by_column = dict(zip([n for n, _ in columns_of(air)], arrays, strict=True))
    assert by_column["pm25"] == [1.5, None]
    assert by_column["no2"] == [None, 2.0]


def test_derived_values_fill_their_columns_by_reading_key() -> None:
    air = get_kind("air")
    first, second = reading("a", 0, pm25=80), reading("a", 1, pm25=90)
    derived = {(first.sensor_id, first.ts): {"vn_aqi": 160, "vn_aqi_pollutant": "pm25"}}
    arrays = column_arrays(air, [first, second], derived)
    by_column = dict(zip([n for n, _ in columns_of(air)], arrays, strict=True))
    assert by_column["vn_aqi"] == [160, None]
    assert by_column["vn_aqi_pollutant"] == ["pm25", None]


def test_integer_metrics_are_sent_as_integers() -> None:
    cam = get_kind("traffic_camera")
    r = Reading("c", "traffic_camera", T0, {"motorbike": 120.0}, T0, "t")
    by_column = dict(zip([n for n, _ in columns_of(cam)], column_arrays(cam, [r]), strict=True))
    assert by_column["motorbike"] == [120] and isinstance(by_column["motorbike"][0], int)


def test_newest_per_sensor_is_by_event_time_not_arrival_order() -> None:
    late = reading("a", 5, pm25=1)
    early = reading("a", 1, pm25=2)
    other = reading("b", 0, pm25=3)
    assert newest_per_sensor([late, early, other]) == [late, other]


def test_insert_is_idempotent_on_sensor_and_time() -> None:
    sql = insert_sql(get_kind("air"))
    assert sql.startswith("INSERT INTO readings_air (sensor_id, ts, received_at, seq, pm25")
    assert sql.endswith("ON CONFLICT (sensor_id, ts) DO NOTHING")
