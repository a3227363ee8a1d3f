"""What a model card learns from the backtest: its table (per fold and mean ± sd, next
to the baselines') and its prediction interval.

The interval's offsets are quantiles of truth - prediction in log1p space over the
backtest folds' scored rows (out-of-sample by construction). Without a matching
backtest report (another data file, feature spec or model configuration) they come
from the training's own holdout window instead, and the card says so.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from velocast.core import tasks
from velocast.core.features import FEATURE_SPEC_VERSION

LEVEL = 0.8
# Offsets are residual quantiles at this coverage: leave-one-fold-out on the 6 backtest
# folds, quantiles at 80 % covered 0.769 (gbdt) and 0.782 (rf) on average, because each
# fold's errors shift from the others' (reopening in May 2021 alone: 0.48); at 82 %
# they cover 0.790 and 0.803.
QUANTILE_LEVEL = 0.82


def offsets(residuals: np.ndarray, level: float = QUANTILE_LEVEL) -> tuple[float, float]:
    """Conformal offsets: the (1 - level)/2 and (1 + level)/2 quantiles of
    truth - prediction, widened to include 0 so that lower <= prediction <= upper."""
    tail = (1 - level) / 2
    low, high = np.quantile(residuals, [tail, 1 - tail])
    return min(float(low), 0.0), max(float(high), 0.0)


def fingerprint(spec, recency_days: float) -> str:
    """Identifies a model configuration: a report made with other hyper-parameters
    does not describe the model being published."""
    params = {k: repr(v) for k, v in sorted(spec.make().get_params().items())}
    text = json.dumps({"params": params, "recency_days": recency_days,
                       "max_rows": spec.max_rows, "weighted": spec.weighted,
                       "offset": spec.offset, "hidden": list(spec.hidden),
                       # single models keep the fingerprint their reports were made with
                       **({"blend": [list(b) for b in spec.blend]} if len(spec.blend) > 1 else {})},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def why_not(report: dict | None, model_type: str, data_name: str, fingerprint_: str) -> str:
    """Empty if the report describes this model trained on this data, else the reason."""
    if report is None:
        return "no backtest report given"
    if report.get("feature_spec_version") != FEATURE_SPEC_VERSION:
        return f"report is for feature spec {report.get('feature_spec_version')}"
    if report.get("config", {}).get("data") != data_name:
        return f"report is for {report.get('config', {}).get('data')}, not {data_name}"
    if report.get("fingerprints", {}).get(model_type) != fingerprint_:
        return f"report's {model_type} was configured differently"
    return ""


def card_fields(report: dict | None, model_type: str, task: str, data_name: str,
                fingerprint_: str, holdout_residuals: np.ndarray | None, holdout: dict) -> dict:
    reason = why_not(report, model_type, data_name, fingerprint_)
    fields = {}
    if not reason:
        baselines = tuple(n for n in ("naive", "plain_hgb", "twenty_line") if n in report["summary"])
        fields["backtest"] = {
            "config": report["config"],
            "mean_sd": {n: report["summary"][n] for n in (model_type, *baselines)},
            "folds": [{"origin": f["origin"], "end": f["end"], "scored_rows": f["scored_rows"],
                       **({"name": f["name"]} if "name" in f else {}),
                       **{n: f["scores"][n] for n in (model_type, *baselines)}}
                      for f in report["folds"]],
            "reproduce": "make backtest (python -m velocast.train.backtest)",
            # what a daily retrain checks before carrying this section to a refit
            "fingerprint": fingerprint_,
        }
        if model_type in report.get("summary_by_horizon", {}):
            fields["backtest"]["by_horizon"] = {
                n: report["summary_by_horizon"][n] for n in (model_type, *baselines)}
        # The decision rule's verdicts (velocast.train.backtest_score.decide).
        decisions = {k.split(" vs ")[1]: v for k, v in report.get("decisions", {}).items()
                     if k.split(" vs ")[0] == model_type}
        if decisions:
            fields["backtest"]["decisions"] = decisions
        metric = tasks.get(task).default_metric
        ours, plain = (report["summary"][n][metric][0] for n in (model_type, "plain_hgb"))
        beats = tasks.better(metric, ours, plain)
        fields["backtest"]["beats_plain_hgb"] = beats
        # A mean can be won by one fold where the baseline fails: say how many.
        pairs = [(f["scores"][model_type][metric], f["scores"]["plain_hgb"][metric])
                 for f in report["folds"]]
        won = sum(tasks.better(metric, o, p) for o, p in pairs)
        fields["backtest"]["folds_beating_plain_hgb"] = f"{won} of {len(report['folds'])}"
        if not beats:
            fields["backtest"]["note"] = (
                f"on the backtest mean this model does NOT beat the plain-HGB baseline "
                f"({metric} {ours:.4f} vs {plain:.4f}); prefer the default model")
    if not tasks.get(task).kind.interval:
        return fields
    if not reason:
        interval = report["interval"][model_type]
        calibration = (f"truth - prediction quantiles over the {len(report['folds'])} backtest "
                       "folds' scored rows, per horizon after trained_to" if "horizons" in interval
                       else f"truth - prediction quantiles over the {len(report['folds'])} "
                       "backtest folds' scored rows")
    else:
        low, high = offsets(holdout_residuals)
        interval = {"level": LEVEL, "lower_log": low, "upper_log": high}
        calibration = (f"truth - prediction quantiles on the {holdout['from']}..{holdout['to']} "
                       f"holdout ({reason})")
    fields["interval"] = {**interval, "calibration": calibration}
    return fields
