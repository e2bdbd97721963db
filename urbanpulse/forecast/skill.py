"""Mean absolute error and the skill score against persistence."""

from __future__ import annotations

import math

import numpy as np

from urbanpulse.forecast.series import FloatArray

MODEL = "model"
PERSISTENCE = "persistence"
SAME_HOUR_YESTERDAY = "same_hour_yesterday"


def mae(predicted: FloatArray, observed: FloatArray) -> float:
    """Mean absolute error over the pairs where both are known (NaN when there are none)."""
    both = np.isfinite(predicted) & np.isfinite(observed)
    if not both.any():
        return math.nan
    return float(np.mean(np.abs(predicted[both] - observed[both])))


def skill_score(mae_model: float, mae_persistence: float) -> float:
    """1 - MAE_model / MAE_persistence: above 0 beats persistence, 1 is perfect.

    Persistence without error cannot be beaten: the score is 0 for a perfect model and -inf
    for any other.
    """
    if mae_persistence == 0:
        return 0.0 if mae_model == 0 else -math.inf
    return 1.0 - mae_model / mae_persistence


def served_method(skill: float) -> str:
    """The model is served only where it beat persistence; unknown skill is no skill."""
    return MODEL if skill > 0 else PERSISTENCE
