"""What scenario events do to the devices at one instant: a small value the models read.

The scenario engine computes a ``Conditions`` per sensor and instant from the timed events
(pollution episode, rain, plume, overflow wave, fire, incident); the device models stay
ignorant of scenarios and only know how such conditions change what they measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

VIETNAM_UTC_OFFSET = timedelta(hours=7)  # Ho Chi Minh City and Hanoi: UTC+7, no DST


@dataclass(frozen=True)
class Conditions:
    pollution: float = 1.0  # multiplier on traffic-borne air pollutants (episode)
    rain: float = 0.0  # 0 dry .. 1 heavy rain (washes PM down, muddies water)
    plume: float = 0.0  # 0 .. 1 strength of a water pollution plume
    # Overflow waves: (start, end, extra fill in %/h) windows the bin model integrates.
    fill_surges: tuple[tuple[datetime, datetime, float], ...] = ()
    fire: float = 0.0  # 0 .. 1 strength of a fire inside a bin
    incident: int = 0  # traffic incident code on the camera's road (0 = none)
    upset: float = 0.0  # 0 .. 1 strength of a facility upset (landfill gas, incinerator stack)


CALM = Conditions()


def local_hour(ts: datetime) -> float:
    """Hour of the day in Vietnam (0 <= h < 24) for an aware UTC instant."""
    local = ts.astimezone(UTC) + VIETNAM_UTC_OFFSET
    return local.hour + local.minute / 60.0 + local.second / 3600.0


def epoch_s(ts: datetime) -> int:
    return int(ts.timestamp())
