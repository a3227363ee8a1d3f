"""Prediction intervals of a regress model, carried in its card.

card["interval"] = {"level": 0.8, "lower_log": a, "upper_log": b, ...}: the bounds are
prediction + a and prediction + b in log1p space (conformal offsets: quantiles of
truth - prediction on backtest folds), a number each or 24 numbers (one per local
hour). Standard library and numpy only: this ships in the regress bundle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    level: float
    lower_log: np.ndarray    # (24,) offset per local hour
    upper_log: np.ndarray

    def bounds(self, log_prediction: np.ndarray, hour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper counts (never negative) for log1p predictions."""
        hour = np.asarray(hour, dtype=np.int64)
        lower = np.expm1(log_prediction + self.lower_log[hour])
        upper = np.expm1(log_prediction + self.upper_log[hour])
        return np.clip(lower, 0.0, None), np.clip(upper, 0.0, None)


def _offsets(value, name: str) -> np.ndarray:
    values = [value] * 24 if isinstance(value, (int, float)) else value
    if not isinstance(values, list) or len(values) != 24 or \
            not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ValueError(f"card interval {name} must be a finite number or 24 of them")
    return np.asarray(values, dtype=np.float64)


def from_card(card: dict) -> Interval | None:
    """The card's interval, None for a card without one (models published before
    intervals existed); ValueError for a malformed one, so such a model is refused."""
    spec = card.get("interval")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("card interval must be an object")
    level = spec.get("level")
    if not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"card interval level must be in (0, 1), got {level!r}")
    lower, upper = _offsets(spec.get("lower_log"), "lower_log"), _offsets(spec.get("upper_log"), "upper_log")
    if (lower > upper).any():
        raise ValueError("card interval lower_log exceeds upper_log")
    return Interval(float(level), lower, upper)
