"""The metrics every model is judged by, offline and live: one definition, so a
holdout, a backtest fold and a served champion are scored alike."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, f1_score, mean_absolute_error, precision_score,
                             r2_score, recall_score, roc_auc_score)


def regression_metrics(log_truth: np.ndarray, log_prediction: np.ndarray) -> dict:
    truth, prediction = np.expm1(log_truth), np.clip(np.expm1(log_prediction), 0, None)
    return {
        "rmse_log": float(np.sqrt(np.mean((log_truth - log_prediction) ** 2))),
        "rmse": float(np.sqrt(np.mean((truth - prediction) ** 2))),
        "mae": float(mean_absolute_error(truth, prediction)),
        "r2": float(r2_score(truth, prediction)),
    }


def classification_metrics(truth: np.ndarray, probability: np.ndarray) -> dict:
    predicted = (probability >= 0.5).astype(np.int64)
    return {
        "f1_score": float(f1_score(truth, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(truth, predicted)),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(truth, probability)) if len(set(truth)) == 2 else float("nan"),
    }
