"""Backtest on weeks of simulated hourly data, generated from the simulator models directly.

The shipped scenarios give the fleet (city, wards, station count); their few hours of events
are replaced by weeks of weather drawn from the seed: afternoon showers (the tropical wet
season), occasional night rain and pollution episodes (inversions trapping exhaust) over one
ward or the whole city.  The scenario engine then yields every reading of those weeks without
MQTT; the readings' hourly means are the series.  Everything is a function of the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson

from urbanpulse.forecast.forecaster import (
    SERVED,
    Forecaster,
    HorizonScore,
    baselines,
    score,
    train,
)
from urbanpulse.forecast.series import HourlySeries, features
from urbanpulse.forecast.skill import MODEL, PERSISTENCE, SAME_HOUR_YESTERDAY
from urbanpulse.simulators.conditions import VIETNAM_UTC_OFFSET
from urbanpulse.simulators.engine import ScenarioEngine
from urbanpulse.simulators.fleet import CITY_PROVINCES
from urbanpulse.simulators.scenario import (
    FleetEntry,
    Gateway,
    PollutionEpisode,
    Rain,
    Scenario,
)

# A fixed local midnight: the simulated weeks do not depend on when the backtest runs.
SIMULATION_START = datetime(2026, 6, 1, tzinfo=UTC) - VIETNAM_UTC_OFFSET
READING_INTERVAL = "5m"  # 12 readings make an hourly mean
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
METRICS = ("pm25", "humidity", "temperature")

Report = Callable[[int, int], None]  # (days simulated, days in all)


def weather(scenario: Scenario, days: int, seed: int) -> list[Rain | PollutionEpisode]:
    """Rain and pollution episodes for ``days`` days from SIMULATION_START."""
    rng = np.random.default_rng(seed)
    areas = sorted({e.area for e in scenario.fleet if e.area} | {CITY_PROVINCES[scenario.city]})
    events: list[Rain | PollutionEpisode] = []
    for day in range(days):
        midnight = SIMULATION_START + day * DAY
        if rng.random() < 0.45:  # an afternoon shower
            events.append(_rain(midnight + timedelta(hours=rng.uniform(13, 19)), rng))
        if rng.random() < 0.1:  # rain in the night
            events.append(_rain(midnight + timedelta(hours=rng.uniform(0, 6)), rng))
        if rng.random() < 0.25:
            at = midnight + timedelta(hours=rng.uniform(0, 24))
            episode = {
                "type": "pollution_episode",
                "at": at.isoformat(),
                "area": str(rng.choice(areas)),
                "duration": _minutes(rng.uniform(180, 1080)),
                "factor": rng.uniform(1.5, 3.5),
                "ramp": _minutes(rng.uniform(30, 120)),
            }
            events.append(PollutionEpisode.model_validate(episode))
    return events


def _rain(at: datetime, rng: np.random.Generator) -> Rain:
    rain = {
        "type": "rain",
        "at": at.isoformat(),
        "duration": _minutes(rng.uniform(30, 180)),
        "intensity": rng.uniform(0.3, 1.0),
    }
    return Rain.model_validate(rain)


def _minutes(value: float) -> str:
    """A scenario duration (the models take the text a scenario file holds)."""
    return f"{round(value)}m"


def weeks_of_air(
    scenario: Scenario, weeks: int, seed: int, report: Report | None = None
) -> list[HourlySeries]:
    """Hourly PM2.5, humidity and temperature of the scenario's air stations over ``weeks``."""
    days = 7 * weeks
    fleet = [
        FleetEntry.model_validate(
            {
                "kind": "air",
                "count": e.count,
                "area": e.area,
                "road": e.road,
                "interval": READING_INTERVAL,
            }
        )
        for e in scenario.fleet
        if e.kind == "air"
    ]
    long_run = scenario.model_copy(
        update={
            "start": SIMULATION_START.isoformat(),
            "duration": days * DAY,  # model_copy does not validate: the parsed value
            "gateway": Gateway(),
            "fleet": fleet,
            "events": weather(scenario, days, seed),
        }
    )
    engine = ScenarioEngine(long_run, SIMULATION_START, "backtest", seed=seed)
    hours = days * 24
    sums = {sid: np.zeros((len(METRICS), hours)) for sid in engine.sensors_in(None, "air")}
    counts = {sid: np.zeros(hours) for sid in sums}
    for day in range(days):
        start = SIMULATION_START + day * DAY
        for message in engine.messages_between(start, start + DAY):
            reading = orjson.loads(message.payload)
            ts = datetime.fromisoformat(reading["ts"])
            index = int((ts - SIMULATION_START) / HOUR)
            if 0 <= index < hours:
                values = reading["values"]
                sums[message.sensor_id][:, index] += [values[m] for m in METRICS]
                counts[message.sensor_id][index] += 1
        if report is not None:
            report(day + 1, days)
    result = []
    for sid, total in sums.items():
        with np.errstate(invalid="ignore"):
            means = total / counts[sid]
        result.append(HourlySeries(sid, SIMULATION_START, means[0], means[1], means[2]))
    return result


@dataclass(frozen=True)
class BacktestResult:
    scores: list[HorizonScore]
    forecaster: Forecaster
    stations: int
    train_hours: int
    test_hours: int


def backtest(histories: Sequence[HourlySeries], seed: int) -> BacktestResult:
    """Train on every week but the last, then score each method on the last week."""
    end = max(s.hour(len(s)) for s in histories)
    test_start = end - timedelta(days=7)
    forecaster = train(histories, seed, until=test_start)
    methods = {
        **baselines(),
        MODEL: lambda s, o, h: forecaster.model.predict(features(s, o, h)).median,
        SERVED: lambda s, o, h: forecaster.predict(s, o, h).median,
    }
    scores = score(methods, histories, since=test_start)
    train_hours = int((test_start - min(s.start for s in histories)) / HOUR)
    return BacktestResult(scores, forecaster, len(histories), train_hours, 7 * 24)


def format_table(result: BacktestResult) -> str:
    header = (
        f"{'h':>3} {'persistence':>12} {'same_hour_yday':>15} {'model':>8} {'skill':>7} "
        f"{'served':>12} {'served_skill':>13} {'rows':>6}"
    )
    lines = [header]
    for s in result.scores:
        method = result.forecaster.method(s.horizon)
        lines.append(
            f"{s.horizon:>3} {s.mae[PERSISTENCE]:>12.2f} {s.mae[SAME_HOUR_YESTERDAY]:>15.2f} "
            f"{s.mae[MODEL]:>8.2f} {s.skill:>+7.3f} {method:>12} {s.served_skill:>+13.3f} "
            f"{s.rows:>6}"
        )
    return "\n".join(lines)
