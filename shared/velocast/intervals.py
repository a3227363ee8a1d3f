"""Prediction intervals of a regress model, carried in its card.

card["interval"] = {"level": 0.8, "lower_log": a, "upper_log": b, ...}: the bounds are
prediction + a and prediction + b in log1p space, a <= 0 <= b (conformal offsets:
quantiles of truth - prediction over the backtest folds, velocast.train.calibration).
Standard library and numpy only: this ships in the regress bundle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    level: float
    lower_log: float
    upper_log: float

    def bounds(self, log_prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper counts (never negative) around log1p predictions."""
        log_prediction = np.asarray(log_prediction, dtype=np.float64)
        return (np.clip(np.expm1(log_prediction + self.lower_log), 0.0, None),
                np.clip(np.expm1(log_prediction + self.upper_log), 0.0, None))


def _number(spec: dict, name: str) -> float:
    value = spec.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"card interval {name} must be a finite number, got {value!r}")
    return float(value)


def from_card(card: dict) -> Interval | None:
    """The card's interval, None for a card without one (models published before
    intervals existed); ValueError for a malformed one, so such a model is refused."""
    spec = card.get("interval")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("card interval must be an object")
    level, lower, upper = (_number(spec, k) for k in ("level", "lower_log", "upper_log"))
    if not 0 < level < 1:
        raise ValueError(f"card interval level must be in (0, 1), got {level!r}")
    if not lower <= 0 <= upper:
        raise ValueError(f"card interval needs lower_log <= 0 <= upper_log, got {lower}, {upper}")
    return Interval(level, lower, upper)
