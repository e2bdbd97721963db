"""The congestion index against the HCM 2010 level-of-service thresholds it is built on.

Expected scores are worked by hand: LOS band edges sit at 0, 16.67, 33.33, 50, 66.67, 83.33
and 100 on the 0-100 score; speed shares 85/67/50/40/30 % of 40 km/h and occupancies
4.4/7.3/10.5/14.1/18.2 % fall on those edges.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from urbanpulse.core.envelope import Reading
from urbanpulse.indices.congestion import BANDS, congestion_index
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.storage.scales import SCALE_OF_KIND, sensor_index
from urbanpulse.stream.derive import derive_indices
from urbanpulse.stream.windows import HourlyMeans


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"avg_speed": 40.0, "vehicles": 30}, 0),  # free flow
        ({"avg_speed": 34.0, "vehicles": 30}, 17),  # 85 % of 40 km/h: edge A|B, 16.67
        ({"avg_speed": 20.0, "vehicles": 30}, 50),  # 50 %: edge C|D
        ({"avg_speed": 18.0, "vehicles": 30}, 58),  # 45 %: halfway 50..66.67
        ({"avg_speed": 12.0, "vehicles": 30}, 83),  # 30 %: edge E|F, 83.33
        ({"avg_speed": 0.0, "vehicles": 30}, 100),  # standing still with vehicles: jam
        ({"occupancy": 10.5}, 50),  # edge C|D
        ({"occupancy": 18.2}, 83),  # edge E|F
        ({"occupancy": 77.0}, 100),  # jam density
        ({"avg_speed": 40.0, "occupancy": 14.1, "vehicles": 30}, 67),  # the worse of the two
        ({"avg_speed": 0.0, "vehicles": 0, "occupancy": 0.0}, 0),  # a quiet street at night
        ({"avg_speed": 0.0, "motorbike": 0, "car": 0}, None),  # nothing passed, no occupancy
        ({"motorbike": 12}, None),
    ],
)
def test_congestion_index_follows_the_los_thresholds(
    values: dict[str, float], expected: int | None
) -> None:
    assert congestion_index(values) == expected


def test_bands_are_the_six_levels_of_service_without_gaps() -> None:
    assert [b.key for b in BANDS] == ["los_a", "los_b", "los_c", "los_d", "los_e", "los_f"]
    assert all(a.high + 1 == b.low for a, b in itertools.pairwise(BANDS))
    scale = SCALE_OF_KIND["traffic_camera"]
    assert scale.bands[scale.band_index(17)].key == "los_b"
    assert scale.bands[scale.band_index(84)].key == "los_f"


def test_camera_readings_get_their_congestion_index_on_the_map_scale() -> None:
    ts = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    reading = Reading("cam-1", "traffic_camera", ts, {"avg_speed": 12.0, "vehicles": 80}, ts, "t")
    derived = derive_indices([reading], HourlyMeans(["pm25"]), Combination.WEIGHTED_CUBE_ROOT)
    assert derived == {("cam-1", ts): {"congestion": 83}}
    index = sensor_index("traffic_camera", reading.values, derived[("cam-1", ts)])
    assert index is not None and index["band"]["key"] == "los_e"
