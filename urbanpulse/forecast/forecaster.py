"""Training with a per-horizon verdict, and forecasts that fall back to persistence.

``train`` fits the quantile model on the older part of the history and scores it on the newer
part (a time split: no future leaks into training), horizon by horizon, against persistence.
Where the model did not beat persistence, persistence is served at that horizon, with a band
from persistence's own past errors.  The model is then refitted on the whole history.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from urbanpulse.forecast.model import Band, QuantileModel, fit_quantiles
from urbanpulse.forecast.series import (
    DAY,
    HORIZONS,
    FloatArray,
    HourlySeries,
    IntArray,
    actual,
    features,
    persistence,
    same_hour_yesterday,
    usable_origins,
)
from urbanpulse.forecast.skill import (
    MODEL,
    PERSISTENCE,
    SAME_HOUR_YESTERDAY,
    mae,
    served_method,
    skill_score,
)

HOUR = timedelta(hours=1)
VALIDATION_FRACTION = 0.25
MIN_TRAINING_ROWS = 500
SERVED = "served"  # the forecast as served: the model or, where it has no skill, persistence


class NotEnoughHistoryError(ValueError):
    """Too few hourly values to train on or to judge a model by."""


@dataclass(frozen=True)
class HorizonForecast:
    horizon: int
    valid_at: datetime  # start of the forecast hour
    method: str
    skill: float  # the model's skill on the validation hours at this horizon
    lower: float
    median: float
    upper: float


@dataclass(frozen=True)
class HorizonScore:
    horizon: int
    mae: Mapping[str, float]  # per method, over the same hours
    rows: int

    @property
    def skill(self) -> float:
        return skill_score(self.mae[MODEL], self.mae[PERSISTENCE])

    @property
    def served_skill(self) -> float:
        return skill_score(self.mae[SERVED], self.mae[PERSISTENCE])


@dataclass(frozen=True)
class Forecaster:
    model: QuantileModel
    skill: Mapping[int, float]  # validation skill per horizon
    spread: Mapping[int, tuple[float, float]]  # persistence's 10 % and 90 % errors per horizon

    def method(self, horizon: int) -> str:
        return served_method(self.skill[horizon])

    def predict(self, series: HourlySeries, origins: IntArray, horizon: int) -> Band:
        """The served band at one horizon for each origin."""
        if self.method(horizon) == MODEL:
            return self.model.predict(features(series, origins, horizon))
        value = persistence(series, origins, horizon)
        low, high = self.spread[horizon]
        return Band(
            np.maximum(np.minimum(value + low, value), 0.0), value, np.maximum(value + high, value)
        )

    def forecast(self, series: HourlySeries, origin: int) -> list[HorizonForecast]:
        """Every horizon from the origin hour ``origin``; empty if that hour has no value."""
        if not math.isfinite(series.pm25[origin]):
            return []
        at = np.array([origin], dtype=np.int64)
        result = []
        for horizon in HORIZONS:
            band = self.predict(series, at, horizon)
            result.append(
                HorizonForecast(
                    horizon,
                    series.hour(origin + horizon),
                    self.method(horizon),
                    self.skill[horizon],
                    float(band.lower[0]),
                    float(band.median[0]),
                    float(band.upper[0]),
                )
            )
        return result


def _index(series: HourlySeries, moment: datetime | None, default: int) -> int:
    if moment is None:
        return default
    return math.ceil((moment - series.start) / HOUR)


def _rows(
    histories: Sequence[HourlySeries],
    horizon: int,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[tuple[HourlySeries, IntArray]], FloatArray]:
    """Origins from ``since`` whose target hour ends by ``until``, with their targets."""
    picked = []
    targets = []
    for series in histories:
        first = _index(series, since, DAY)
        end = _index(series, until, len(series)) - horizon
        origins = usable_origins(series, max(first, DAY), end)
        origins = origins[np.isfinite(actual(series, origins, horizon))]
        picked.append((series, origins))
        targets.append(actual(series, origins, horizon))
    return picked, np.concatenate(targets) if targets else np.empty(0)


def _fit(histories: Sequence[HourlySeries], until: datetime | None, seed: int) -> QuantileModel:
    blocks, targets = [], []
    for horizon in HORIZONS:
        picked, y = _rows(histories, horizon, None, until)
        blocks += [features(series, origins, horizon) for series, origins in picked]
        targets.append(y)
    y_all = np.concatenate(targets)
    if len(y_all) < MIN_TRAINING_ROWS:
        raise NotEnoughHistoryError(
            f"{len(y_all)} training rows, fewer than {MIN_TRAINING_ROWS}: "
            "a few days of hourly values are needed"
        )
    return fit_quantiles(np.concatenate(blocks), y_all, seed)


Method = Callable[[HourlySeries, IntArray, int], FloatArray]


def score(
    methods: Mapping[str, Method],
    histories: Sequence[HourlySeries],
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[HorizonScore]:
    """MAE of each method per horizon, over the origins where every method has a forecast."""
    scores = []
    for horizon in HORIZONS:
        picked, observed = _rows(histories, horizon, since, until)
        predicted = {
            name: np.concatenate([method(s, o, horizon) for s, o in picked] or [np.empty(0)])
            for name, method in methods.items()
        }
        common = np.isfinite(observed)
        for values in predicted.values():
            common &= np.isfinite(values)
        maes = {name: mae(values[common], observed[common]) for name, values in predicted.items()}
        scores.append(HorizonScore(horizon, maes, int(common.sum())))
    return scores


def baselines() -> dict[str, Method]:
    return {PERSISTENCE: persistence, SAME_HOUR_YESTERDAY: same_hour_yesterday}


def _spread(
    histories: Sequence[HourlySeries], until: datetime | None
) -> dict[int, tuple[float, float]]:
    spread = {}
    for horizon in HORIZONS:
        picked, observed = _rows(histories, horizon, None, until)
        errors = observed - np.concatenate(
            [persistence(s, o, horizon) for s, o in picked] or [np.empty(0)]
        )
        low, high = np.quantile(errors, [0.1, 0.9]) if len(errors) else (0.0, 0.0)
        spread[horizon] = (float(low), float(high))
    return spread


def validation_cut(histories: Sequence[HourlySeries], until: datetime | None) -> datetime:
    """The instant splitting the known history into its older 75 % and newer 25 %."""
    known = [
        s.hour(int(np.argmax(np.isfinite(s.pm25)))) for s in histories if np.isfinite(s.pm25).any()
    ]
    if not known:
        raise NotEnoughHistoryError("no hourly value in any series")
    first = min(known)
    last = max(s.hour(len(s)) for s in histories)
    if until is not None:
        last = min(last, until)
    return first + (last - first) * (1 - VALIDATION_FRACTION)


def train(
    histories: Sequence[HourlySeries], seed: int, until: datetime | None = None
) -> Forecaster:
    """A forecaster from the hours before ``until`` (all of them by default)."""
    if not histories:
        raise NotEnoughHistoryError("no hourly series to learn from")
    cut = validation_cut(histories, until)
    trial = _fit(histories, cut, seed)
    judged = Forecaster(trial, dict.fromkeys(HORIZONS, math.inf), {})
    scores = score(
        {**baselines(), MODEL: lambda s, o, h: judged.predict(s, o, h).median},
        histories,
        since=cut,
        until=until,
    )
    skill = {s.horizon: s.skill if s.rows else math.nan for s in scores}
    return Forecaster(_fit(histories, until, seed), skill, _spread(histories, until))
