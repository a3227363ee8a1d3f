"""Scores of the backtest folds: overall, per horizon bucket and per day type, the
cross-conformal 80 % intervals per horizon bucket, the mean over the folds and the
decision rule a change is kept by.

Horizon: day 1 is the first local day after the training rows (the fold's origin; a
served model's `trained_to` + 1), the buckets are `velocast.core.intervals.HORIZONS`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from velocast.core.local_time import PARIS, local_calendar
from velocast.core.intervals import HORIZONS, horizon_bucket
from velocast.train import metrics
from velocast.train.calibration import LEVEL, offsets

DAY_TYPE_NAMES = ("working day", "saturday", "sunday or holiday")
HORIZON_NAMES = tuple(h.name for h in HORIZONS)
# A change is kept when it is better on the mean over the folds AND no fold is worse
# by more than this (RMSE log1p; F1 for the classifier). The MLP's own seed moves its
# 6-fold mean by +-0.005 and a single fold by up to 0.02 (feature spec 2).
MARGIN = {"rmse_log": 0.02, "f1_score": 0.01}


def breakdown(groups: np.ndarray, names, score) -> dict:
    """{group name: score(rows of the group) + its row count}; groups index `names`."""
    return {name: {**score(groups == k), "rows": int((groups == k).sum())}
            for k, name in enumerate(names) if (groups == k).any()}


def rmse_log(truth: np.ndarray, log: np.ndarray):
    return lambda rows: {"rmse_log": float(np.sqrt(np.mean((truth[rows] - log[rows]) ** 2)))}


def f1(truth: np.ndarray, probability: np.ndarray):
    return lambda rows: {"f1_score": metrics.classification_metrics(
        truth[rows], probability[rows])["f1_score"]}


def fold_groups(result) -> tuple[np.ndarray, np.ndarray]:
    """Each scored row's horizon bucket and day type."""
    epoch = result.scored_epoch
    return horizon_bucket(epoch, result.fold.origin), local_calendar(epoch).day_type


def paris_midnight(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), tzinfo=PARIS).timestamp()


def bucket_offsets(residuals: list[np.ndarray], buckets: list[np.ndarray]) -> list[tuple]:
    """Conformal offsets per horizon bucket from the given folds' residuals."""
    out = []
    for k in range(len(HORIZONS)):
        pooled = np.concatenate([r[b == k] for r, b in zip(residuals, buckets)])
        out.append(offsets(pooled) if len(pooled) else (0.0, 0.0))
    return out


def score(results: list) -> dict:
    """Fill each fold's scores (overall, `by_horizon`, `by_day_type`); intervals are
    cross-conformal: fold k's offsets come from the other folds' residuals of the same
    horizon bucket, so coverage is measured on unseen residuals. Returns the interval
    calibrated on every fold, per regress candidate."""
    names = list(results[0].outputs)
    groups = [fold_groups(r) for r in results]
    buckets = [g[0] for g in groups]
    residuals = {n: [r.truth_log - r.outputs[n]["log"] for r in results]
                 for n in names if "log" in results[0].outputs[n]}
    for k, r in enumerate(results):
        others = [j for j in range(len(results)) if j != k] or [k]
        bucket, day_type = groups[k]
        for name in names:
            out, s = r.outputs[name], {}
            if "log" in out:
                s.update(metrics.regression_metrics(r.truth_log, out["log"]))
                table = bucket_offsets([residuals[name][j] for j in others],
                                       [buckets[j] for j in others])
                low = np.array([t[0] for t in table])[bucket]
                high = np.array([t[1] for t in table])[bucket]
                lower, upper = out["log"] + low, out["log"] + high
                inside = (r.truth_log >= lower) & (r.truth_log <= upper)
                s["coverage"] = float(np.mean(inside))
                s["width"] = float(np.mean(np.expm1(upper) - np.clip(np.expm1(lower), 0, None)))
                by_h = breakdown(bucket, HORIZON_NAMES, rmse_log(r.truth_log, out["log"]))
                for i, h in enumerate(HORIZONS):
                    if h.name in by_h:
                        by_h[h.name]["coverage"] = float(np.mean(inside[bucket == i]))
                r.by_horizon[name] = by_h
                r.by_day_type[name] = breakdown(day_type, DAY_TYPE_NAMES,
                                                rmse_log(r.truth_log, out["log"]))
            if "proba" in out:
                s.update(metrics.classification_metrics(r.truth_busy, out["proba"]))
                by_h = r.by_horizon.setdefault(name, {})
                for bucket_name, v in breakdown(bucket, HORIZON_NAMES,
                                                f1(r.truth_busy, out["proba"])).items():
                    by_h.setdefault(bucket_name, {}).update(v)
            r.scores[name] = s
    return {n: interval_spec(bucket_offsets(v, buckets), np.concatenate(v))
            for n, v in residuals.items()}


def interval_spec(per_bucket: list[tuple], pooled: np.ndarray) -> dict:
    low, high = offsets(pooled)
    return {"level": LEVEL, "lower_log": low, "upper_log": high,
            "horizons": [{"name": h.name, "last_day": h.last_day, "lower_log": lo,
                          "upper_log": hi} for h, (lo, hi) in zip(HORIZONS, per_bucket)]}


def _mean_sd(values: list[float]) -> list[float]:
    return [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0]


def summarize(results: list) -> dict:
    """{name: {metric: [mean, sd]}} over the folds."""
    return {name: {m: _mean_sd([r.scores[name][m] for r in results])
                   for m in results[0].scores[name]}
            for name in results[0].scores}


def summarize_nested(results: list, attribute: str) -> dict:
    """{name: {group: {metric: mean over the folds that hold the group}}}."""
    out: dict = {}
    for name in getattr(results[0], attribute):
        groups: dict = {}
        for r in results:
            for group, values in getattr(r, attribute)[name].items():
                for metric, v in values.items():
                    groups.setdefault(group, {}).setdefault(metric, []).append(v)
        out[name] = {g: {m: float(np.sum(v)) if m == "rows" else float(np.mean(v))
                         for m, v in ms.items()} for g, ms in groups.items()}
    return out


def decide(folds: list[dict], summary: dict, candidate: str, reference: str) -> dict | None:
    """The decision rule: `candidate` is kept over `reference` when it is better on the
    mean over the folds and worse by no more than MARGIN on any fold."""
    if candidate not in summary or reference not in summary:
        return None
    metric = "rmse_log" if "rmse_log" in summary[candidate] else "f1_score"
    if metric not in summary[reference]:
        return None
    sign = 1 if metric == "rmse_log" else -1   # > 0: candidate worse
    gaps = [sign * (f["scores"][candidate][metric] - f["scores"][reference][metric]) for f in folds]
    mean_gap = sign * (summary[candidate][metric][0] - summary[reference][metric][0])
    worst = int(np.argmax(gaps))
    return {"metric": metric, "margin": MARGIN[metric], "mean_gap": mean_gap,
            "fold_gaps": gaps, "worst_fold": folds[worst]["name"], "worst_gap": gaps[worst],
            "folds_better": int(sum(g < 0 for g in gaps)),
            "kept": bool(mean_gap < 0 and max(gaps) <= MARGIN[metric])}
