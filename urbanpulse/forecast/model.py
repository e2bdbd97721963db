"""The learner: scikit-learn's gradient boosting with quantile loss, one model per quantile.

One model serves every horizon (the horizon is a feature), so a few weeks of a few stations
are enough rows.  The median is the point forecast (it minimises the absolute error that the
skill score measures); the 10 % and 90 % quantiles bound the band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from urbanpulse.forecast.series import FloatArray

QUANTILES = (0.1, 0.5, 0.9)
# One OpenMP thread: the job shares its host with the stream processor and the API, and many
# threads on a busy machine are slower than one.
THREADS = 1


@dataclass(frozen=True)
class Band:
    lower: FloatArray
    median: FloatArray
    upper: FloatArray


@dataclass(frozen=True)
class QuantileModel:
    models: tuple[HistGradientBoostingRegressor, ...]  # in the order of QUANTILES

    def predict(self, rows: FloatArray) -> Band:
        with threadpool_limits(THREADS):
            predicted = np.column_stack([m.predict(rows) for m in self.models])
        # Separately fitted quantiles may cross; sorting restores lower <= median <= upper.
        ordered = np.maximum(np.sort(predicted, axis=1), 0.0)
        return Band(ordered[:, 0], ordered[:, 1], ordered[:, 2])


def fit_quantiles(rows: FloatArray, targets: FloatArray, seed: int) -> QuantileModel:
    models = []
    for quantile in QUANTILES:
        model = HistGradientBoostingRegressor(
            loss="quantile",
            quantile=quantile,
            max_iter=100,
            learning_rate=0.1,
            min_samples_leaf=40,
            early_stopping=False,
            random_state=seed,
        )
        with threadpool_limits(THREADS):
            models.append(model.fit(rows, targets))
    return QuantileModel(tuple(models))
