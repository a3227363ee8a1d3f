"""Rolling-origin backtest: each fold fits on every row before its origin and scores
the next `horizon` days, the way a published model is used (same feature module,
same counter table fitted on the training rows only, same estimators whose ONNX
parity the pipeline gates).

    python -m velocast.train.backtest --data FILE [--folds 6] [--horizon-days 28]
        [--step-days 28] [--models gbdt,rf,nn,affluence] [--out bench/backtest]

Writes OUT.md (per-fold tables, mean ± sd), OUT.json (the same, plus the interval
quantiles the training copies into each card) and OUT.png (per-fold scores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from velocast.features import FEATURE_SPEC_VERSION, PARIS
from velocast.train import export, pipeline
from velocast.train.baselines import PlainHGB, SeasonalNaive
from velocast.train.calibration import LEVEL, fingerprint, offsets
from velocast.train.pipeline import MODELS, Prepared, say

BASELINES = {"naive": "both", "plain_hgb": "both"}
REGRESS_METRICS = ("rmse_log", "mae", "r2", "coverage", "width")
CLASSIFY_METRICS = ("f1_score", "accuracy", "roc_auc")


def paris_midnight(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), tzinfo=PARIS).timestamp()


@dataclass(frozen=True)
class Fold:
    index: int
    origin: dt.date          # first scored local day; everything before it is training
    end: dt.date             # first local day after the scored window

    def split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        cut, stop = paris_midnight(self.origin), paris_midnight(self.end)
        return frame[frame["epoch"] < cut], frame[(frame["epoch"] >= cut) & (frame["epoch"] < stop)]


def make_folds(frame: pd.DataFrame, folds: int, horizon_days: int, step_days: int,
               min_train_days: int = 28) -> list[Fold]:
    """Origins `step_days` apart; the last fold's window ends with the data."""
    first = pipeline.local_date(float(frame["epoch"].min()))
    end = pipeline.local_date(float(frame["epoch"].max())) + dt.timedelta(days=1)
    out = []
    for k in range(folds):
        stop = end - dt.timedelta(days=step_days * (folds - 1 - k))
        origin = stop - dt.timedelta(days=horizon_days)
        if (origin - first).days < min_train_days:
            raise ValueError(f"fold {k + 1}: origin {origin} leaves fewer than "
                             f"{min_train_days} training days; use fewer folds")
        out.append(Fold(k + 1, origin, stop))
    return out


@dataclass
class Part:
    """Rows of one side of a split, raw and featurized."""
    frame: pd.DataFrame
    data: Prepared


def fit_candidate(name: str, part: Part):
    """Fit one candidate on training rows only (the test spies on this)."""
    if name == "naive":
        return SeasonalNaive.fit(part.frame)
    if name == "plain_hgb":
        return (PlainHGB.fit(part.frame, part.data.log_count, "regress"),
                PlainHGB.fit(part.frame, part.data.busy, "classify"))
    return pipeline.fit(MODELS[name], part.data)


def predict_candidate(name: str, model, part: Part) -> dict:
    """Outputs on scored rows: {"log": log1p(count)} and/or {"proba": P(busy)}."""
    if name == "naive":
        log = model.predict_log(part.frame)
        above = log - np.log1p(part.data.mean_count)   # the affluence label's threshold
        return {"log": log, "proba": 1 / (1 + np.exp(-4 * above))}
    if name == "plain_hgb":
        return {"log": model[0].output(part.frame), "proba": model[1].output(part.frame)}
    task = MODELS[name].task
    output = export.sklearn_output(model, part.data.matrix, task)
    return {"proba": output} if task == "classify" else {"log": output}


@dataclass
class FoldResult:
    fold: Fold
    fit_rows: int
    scored_rows: int
    fitted_through: float       # newest training instant (epoch seconds)
    scored_from: float
    scored_to: float
    outputs: dict = field(default_factory=dict)   # name -> {"log"/"proba": array}
    truth_log: np.ndarray | None = None
    truth_busy: np.ndarray | None = None
    scores: dict = field(default_factory=dict)    # name -> {metric: value}
    seconds: dict = field(default_factory=dict)


def run_fold(frame: pd.DataFrame, fold: Fold, names: list[str]) -> FoldResult:
    fit_rows, scored_rows = fold.split(frame)
    fit_rows = pipeline.drop_outages(fit_rows)
    table = pipeline.fit_table(fit_rows)
    train = Part(fit_rows, pipeline.prepare(fit_rows, table))
    test = Part(scored_rows, pipeline.prepare(scored_rows, table))
    result = FoldResult(fold, len(fit_rows), len(scored_rows), float(fit_rows["epoch"].max()),
                        float(scored_rows["epoch"].min()), float(scored_rows["epoch"].max()),
                        truth_log=test.data.log_count, truth_busy=test.data.busy)
    for name in names:
        started = time.perf_counter()
        result.outputs[name] = predict_candidate(name, fit_candidate(name, train), test)
        result.seconds[name] = round(time.perf_counter() - started, 1)
        say(f"fold {fold.index} ({fold.origin}): {name} in {result.seconds[name]} s")
    return result


def score(results: list[FoldResult]) -> dict:
    """Fill each fold's scores; intervals are cross-conformal: fold k's offsets come
    from the other folds' residuals, so coverage is measured on unseen residuals.
    Returns the offsets calibrated on every fold, per regress candidate."""
    names = list(results[0].outputs)
    residuals = {n: [r.truth_log - r.outputs[n]["log"] for r in results]
                 for n in names if "log" in results[0].outputs[n]}
    for k, r in enumerate(results):
        others = [j for j in range(len(results)) if j != k] or [k]
        for name in names:
            out, s = r.outputs[name], {}
            if "log" in out:
                s.update(pipeline.regression_metrics(r.truth_log, out["log"]))
                low, high = offsets(np.concatenate([residuals[name][j] for j in others]))
                lower, upper = out["log"] + low, out["log"] + high
                s["coverage"] = float(np.mean((r.truth_log >= lower) & (r.truth_log <= upper)))
                s["width"] = float(np.mean(np.expm1(upper) - np.clip(np.expm1(lower), 0, None)))
            if "proba" in out:
                s.update(pipeline.classification_metrics(r.truth_busy, out["proba"]))
            r.scores[name] = s
    return {n: dict(zip(("lower_log", "upper_log"), offsets(np.concatenate(v))))
            for n, v in residuals.items()}


def summarize(results: list[FoldResult]) -> dict:
    summary = {}
    for name in results[0].scores:
        metrics = results[0].scores[name]
        summary[name] = {m: [float(np.mean(v := [r.scores[name][m] for r in results])),
                             float(np.std(v, ddof=1)) if len(v) > 1 else 0.0]
                         for m in metrics}
    return summary


def _table(rows: dict, metrics: tuple, cell) -> list[str]:
    lines = ["| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, values in rows.items():
        if any(m in values for m in metrics):
            lines.append(f"| {name} | " + " | ".join(cell(values.get(m)) for m in metrics) + " |")
    return lines


def markdown(results: list[FoldResult], summary: dict, config: dict) -> str:
    def one(v):
        return "-" if v is None else f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"

    def pm(v):
        return "-" if v is None else f"{one(v[0])} ± {one(v[1])}"

    lines = [f"# Backtest ({len(results)} folds of {config['horizon_days']} days, "
             f"feature spec {FEATURE_SPEC_VERSION})", "",
             f"Data: `{config['data']}`. Each fold fits on every row before its origin and "
             "scores the next days; `coverage`/`width` are those of the "
             f"{LEVEL:.0%} interval, calibrated on the other folds.", "",
             "## Mean ± sd over the folds", "", "Regression (log1p(count) models):", ""]
    lines += _table(summary, REGRESS_METRICS, pm) + ["", "Affluence (busy = above the counter's mean):", ""]
    lines += _table(summary, CLASSIFY_METRICS, pm)
    for r in results:
        f = r.fold
        lines += ["", f"## Fold {f.index}: scored {f.origin} to {f.end - dt.timedelta(days=1)} "
                      f"({r.scored_rows:,} rows), fitted on {r.fit_rows:,} earlier rows", ""]
        lines += _table(r.scores, REGRESS_METRICS, one) + [""]
        lines += _table(r.scores, CLASSIFY_METRICS, one)
    return "\n".join(lines) + "\n"


def plot(results: list[FoldResult], path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (a dev dependency, only for the figure)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    origins = [str(r.fold.origin) for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, metric, title in zip(axes, ("rmse_log", "coverage", "f1_score"),
                                 ("RMSE log1p (lower is better)", "80% interval coverage",
                                  "affluence F1 (higher is better)")):
        for name in results[0].scores:
            values = [r.scores[name].get(metric) for r in results]
            if all(v is not None for v in values):
                ax.plot(origins, values, marker="o", label=name)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def backtest(frame: pd.DataFrame, model_types: list[str], folds: int = 6,
             horizon_days: int = 28, step_days: int = 28) -> tuple[list[FoldResult], dict]:
    unknown = [m for m in model_types if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model type(s) {unknown}; choose from {sorted(MODELS)}")
    names = list(model_types) + list(BASELINES)
    results = []
    for fold in make_folds(frame, folds, horizon_days, step_days):
        say(f"fold {fold.index}/{folds}: fit before {fold.origin}, score to "
            f"{fold.end - dt.timedelta(days=1)}")
        results.append(run_fold(frame, fold, names))
    return results, score(results)


def report(results: list[FoldResult], intervals: dict, config: dict) -> dict:
    return {
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "config": config,
        "fingerprints": {n: fingerprint(MODELS[n], pipeline.RECENCY_DAYS)
                         for n in results[0].outputs if n in MODELS},
        "interval": {n: {"level": LEVEL, **v} for n, v in intervals.items()},
        "summary": summarize(results),
        "folds": [{"index": r.fold.index, "origin": r.fold.origin.isoformat(),
                   "end": r.fold.end.isoformat(), "fit_rows": r.fit_rows,
                   "scored_rows": r.scored_rows, "seconds": r.seconds, "scores": r.scores}
                  for r in results],
    }


def main(argv=None) -> int:
    from threadpoolctl import threadpool_limits  # noqa: PLC0415
    from velocast.train.data import load_counts  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m velocast.train.backtest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Paris export CSV (optionally .gz)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--horizon-days", type=int, default=28)
    parser.add_argument("--step-days", type=int, default=28)
    parser.add_argument("--out", default="bench/backtest",
                        help="writes OUT.md, OUT.json and OUT.png")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP threads (1: HistGradientBoosting spin-waits on shared cores)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frame, _ = load_counts(args.data)
    config = {"data": Path(args.data).name, "folds": args.folds,
              "horizon_days": args.horizon_days, "step_days": args.step_days,
              "models": args.models, "recency_days": pipeline.RECENCY_DAYS}
    with threadpool_limits(args.threads, user_api="openmp"):
        results, intervals = backtest(frame, [m.strip() for m in args.models.split(",")],
                                      args.folds, args.horizon_days, args.step_days)
    data = report(results, intervals, config)
    text = markdown(results, data["summary"], config)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    plot(results, out.with_suffix(".png"))
    print(text)
    say(f"done in {time.perf_counter() - started:.0f} s; wrote {out}.md/.json/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
