"""Scoring served (ONNX) models on rows, with the training pipeline's metric code,
so a served champion and a freshly fitted challenger are judged the same way; and the
live accuracy of served models on the actuals that arrived after their training."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from velocast.catalog import promotions

from velocast.core import tasks
from velocast.core.features import Records, build_matrix
from velocast.core.local_time import PARIS
from velocast.catalog.store import Store
from velocast.train.metrics import classification_metrics, regression_metrics


def output(model, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(a served model's output on the rows: log1p count or P(busy), each row's counter
    mean in the model's table). `model` is a velocast.catalog.LoadedModel: loaded and
    checked exactly as the functions load it."""
    batch = build_matrix(Records(frame["counter"].tolist(), frame["epoch"].to_numpy(),
                                 frame["latitude"].to_numpy(), frame["longitude"].to_numpy()),
                         model.table)
    return model.output(batch.matrix), batch.mean_count


def metrics_for(task: str, output: np.ndarray, counts: np.ndarray, busy: np.ndarray) -> dict:
    if tasks.get(task).kind.classifier:
        return classification_metrics(busy, output)
    return regression_metrics(np.log1p(counts), output)


def day_of(frame: pd.DataFrame) -> np.ndarray:
    return pd.to_datetime(frame["epoch"], unit="s", utc=True).dt.tz_convert(PARIS).dt.date \
        .astype(str).to_numpy()


def live_accuracy(model, frame: pd.DataFrame) -> dict:
    """Per Paris day after the model's training: rows, RMSE log1p and MAE (regress) or
    F1 (classify, busy meaning above the counter's mean in the model's own table)."""
    days = day_of(frame)
    newer = frame[days > model.entry.trained_to[:10]]
    out = {"model_type": model.entry.model_type, "version": model.entry.version,
           "trained_to": model.entry.trained_to, "published_at": model.entry.published_at,
           "rows": int(len(newer)), "days": {}, "metrics": {}}
    if newer.empty:
        return out
    scored, mean_count = output(model, newer)
    counts = newer["count"].to_numpy(dtype=np.float64)
    busy = (counts > mean_count).astype(np.int64)
    keep = tasks.get(model.entry.task).kind.live_metrics

    def pick(metrics):
        return {k: round(float(metrics[k]), 6) for k in keep}

    out["metrics"] = pick(metrics_for(model.entry.task, scored, counts, busy))
    newer_days = days[days > model.entry.trained_to[:10]]
    for day in sorted(set(newer_days)):
        rows = newer_days == day
        out["days"][day] = {"rows": int(rows.sum()),
                            **pick(metrics_for(model.entry.task, scored[rows], counts[rows], busy[rows]))}
    return out


def write_live(store: Store, task: str, run: str, models: list[dict], newest_day: str) -> str:
    name = f"{promotions.LIVE}{task}/{run}.json"
    body = {"task": task, "run": run, "newest_day": newest_day, "models": models,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    store.write_once(name, json.dumps(body, indent=1, sort_keys=True, allow_nan=False).encode(),
                     "application/json")
    return name
