"""Backtest at the year's transitions: each fold fits on every row before its origin
and forecasts the next 31 days, the way a published model is used until it is
replaced (same feature module, same counter table fitted on the training rows only,
same estimators whose ONNX parity the pipeline gates).

    python -m velocast.train.backtest --data FILE [--origins auto|DATE,DATE,...]
        [--horizon-days 31] [--models gbdt,rf,nn,affluence] [--out bench/backtest]

Origins (`auto`): the last Saturday of each school holidays (the training ends with
two weeks of holidays, the forecast covers the return: autumn, Christmas, winter,
spring), five days before the summer holidays start, and eleven days before the
latest recovery of a counter outage (a counter under a quarter of its usual daily
count for a week or more). Errors are reported per horizon (day 1, days 2-7, days
8-31) and per day type. Writes OUT.md (tables, the decision rule's verdicts), OUT.json
(the same, plus the per-horizon interval the training copies into each card) and
OUT.png.
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

from velocast.core import paris_calendar, tasks
from velocast.core.features import FEATURE_SPEC_VERSION
from velocast.core.local_time import PARIS
from velocast.train import backtest_report, backtest_score, export, pipeline
from velocast.train.backtest_score import paris_midnight
from velocast.train.baselines import PlainHGB, SeasonalNaive, TwentyLine
from velocast.train.calibration import fingerprint
from velocast.train.pipeline import MODELS, Prepared, say

BASELINES = {"naive": SeasonalNaive, "plain_hgb": PlainHGB, "twenty_line": TwentyLine}
HORIZON_DAYS = 31
MIN_TRAIN_DAYS = 28
# An outage: a counter's daily total under this share of its median daily total for
# at least OUTAGE_DAYS days in a row.
OUTAGE_SHARE, OUTAGE_DAYS = 0.25, 7


@dataclass(frozen=True)
class Fold:
    index: int
    origin: dt.date          # first scored local day; everything before it is training
    end: dt.date             # first local day after the scored window
    name: str = ""

    def split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        cut, stop = paris_midnight(self.origin), paris_midnight(self.end)
        return frame[frame["epoch"] < cut], frame[(frame["epoch"] >= cut) & (frame["epoch"] < stop)]


def data_days(frame: pd.DataFrame) -> tuple[dt.date, dt.date]:
    """First local day of the data and the day after its last."""
    return (pipeline.local_date(float(frame["epoch"].min())),
            pipeline.local_date(float(frame["epoch"].max())) + dt.timedelta(days=1))


SEASONS = {10: "autumn", 11: "autumn", 12: "Christmas", 1: "Christmas", 2: "winter",
           3: "winter", 4: "spring", 5: "spring", 7: "summer", 8: "summer"}


def holiday_origins(first: dt.date, end: dt.date) -> list[tuple[dt.date, str]]:
    """(origin, name) for each zone C school holiday transition inside [first, end)."""
    out, day, start = [], first, None
    while day <= end:
        off = paris_calendar.is_school_holiday(day) and day < end
        if off and start is None:
            start = day
        elif not off and start is not None:
            season = SEASONS.get(start.month, start.strftime("%B"))
            if (day - start).days >= 30:        # summer: the holidays' start
                out.append((start - dt.timedelta(days=5), f"start of the {season} holidays"))
            elif day < end:                     # a return inside the data
                out.append((day - dt.timedelta(days=2), f"return after the {season} holidays"))
            start = None
        day += dt.timedelta(days=1)
    return out


def outage_origin(frame: pd.DataFrame, end: dt.date) -> list[tuple[dt.date, str]]:
    """The latest counter recovery from an outage: origin eleven days before it (at
    least a week into the outage), so the training ends inside the outage."""
    day = pd.to_datetime(frame["epoch"], unit="s", utc=True).dt.tz_convert(PARIS).dt.date
    daily = frame.groupby([frame["counter"], day])["count"].sum().unstack(0)
    low = daily < OUTAGE_SHARE * daily.median()
    best = None
    for counter in low.columns:
        run = 0
        for date, is_low in low[counter].items():
            if is_low:
                run += 1
            elif run >= OUTAGE_DAYS:
                origin = max(date - dt.timedelta(days=11), date - dt.timedelta(days=run - 7))
                if date < end and (best is None or date > best[2]):
                    best = (origin, counter, date)
                run = 0
            else:
                run = 0
    return [] if best is None else [(best[0], f"outage: {best[1]} back on {best[2]}")]


def make_folds(frame: pd.DataFrame, origins: list[dt.date] | None = None,
               horizon_days: int = HORIZON_DAYS) -> list[Fold]:
    """Folds at the given origins, or at the year's transitions (`None`); windows are
    cut at the data's end."""
    first, end = data_days(frame)
    named = [(o, "") for o in origins] if origins else \
        holiday_origins(first, end) + outage_origin(frame, end)
    named = sorted({o: n for o, n in reversed(named)}.items())   # one fold per origin
    folds = []
    for origin, name in named:
        if (origin - first).days < MIN_TRAIN_DAYS or origin >= end:
            if origins:
                raise ValueError(f"origin {origin} leaves fewer than {MIN_TRAIN_DAYS} training "
                                 f"days or no scored day in {first}..{end}")
            continue
        stop = min(origin + dt.timedelta(days=horizon_days), end)
        folds.append(Fold(len(folds) + 1, origin, stop, name or f"origin {origin}"))
    if not folds:
        raise ValueError(f"no transition with {MIN_TRAIN_DAYS} training days in {first}..{end}; "
                         "give --origins")
    return folds


@dataclass
class Part:
    """Rows of one side of a split, raw and featurized."""
    frame: pd.DataFrame
    data: Prepared


def fit_candidate(name: str, part: Part):
    """Fit one candidate on training rows only (the test spies on this)."""
    if name == "naive":
        return SeasonalNaive.fit(part.frame)
    if name in BASELINES:
        kind = BASELINES[name]
        return (kind.fit(part.frame, part.data.log_count, tasks.REGRESSION),
                kind.fit(part.frame, part.data.busy, tasks.CLASSIFICATION))
    return pipeline.fit(MODELS[name], part.data)


def predict_candidate(name: str, model, part: Part) -> dict:
    """Outputs on scored rows: {"log": log1p(count)} and/or {"proba": P(busy)}."""
    if name == "naive":
        log = model.predict_log(part.frame)
        above = log - np.log1p(part.data.mean_count)   # the affluence label's threshold
        return {"log": log, "proba": 1 / (1 + np.exp(-4 * above))}
    if name in BASELINES:
        return {"log": model[0].output(part.frame), "proba": model[1].output(part.frame)}
    spec = MODELS[name]
    output = export.sklearn_output(model, part.data.matrix, spec.task)
    return {"proba": output} if spec.kind.classifier else {"log": output}


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
    scored_epoch: np.ndarray | None = None
    scores: dict = field(default_factory=dict)    # name -> {metric: value}
    by_horizon: dict = field(default_factory=dict)    # name -> {bucket: {metric: value}}
    by_day_type: dict = field(default_factory=dict)   # name -> {day type: {metric: value}}
    seconds: dict = field(default_factory=dict)


def run_fold(frame: pd.DataFrame, fold: Fold, names: list[str]) -> FoldResult:
    before, scored_rows = fold.split(frame)
    # Sensor outages (pipeline.drop_outages: counter-days without a bike, or under 30 %
    # of the counter's profile) are neither trained on nor scored: no model can foresee
    # a broken sensor, users are not forecast one, and a model scored on its zeros or
    # quarter counts is rewarded for trusting the level the outage left behind. The
    # scored days are judged against the profile of every row up to the fold's end
    # (a sensor broken for the whole window is not its own reference): 0 to 504
    # scored rows per fold (20 Avenue de Clichy in April-May 2021), under 1.4 %.
    # The baselines stay what they were: fitted on every counter-day with a count.
    fit_rows = pipeline.drop_outages(before)
    kept = pipeline.drop_outages(pd.concat([before, scored_rows]))
    scored_rows = kept[kept["epoch"] >= paris_midnight(fold.origin)]
    table = pipeline.fit_table(fit_rows)
    train = Part(fit_rows, pipeline.prepare(fit_rows, table))
    test = Part(scored_rows, pipeline.prepare(scored_rows, table))
    plain_rows = pipeline.drop_outages(before, partial=False)
    plain_table = pipeline.fit_table(plain_rows)
    plain = Part(plain_rows, pipeline.prepare(plain_rows, plain_table))
    plain_test = Part(scored_rows, pipeline.prepare(scored_rows, plain_table))
    result = FoldResult(fold, len(fit_rows), len(scored_rows), float(fit_rows["epoch"].max()),
                        float(scored_rows["epoch"].min()), float(scored_rows["epoch"].max()),
                        truth_log=test.data.log_count, truth_busy=test.data.busy,
                        scored_epoch=test.data.epoch)
    for name in names:
        started = time.perf_counter()
        fitted, scored = (plain, plain_test) if name in BASELINES else (train, test)
        result.outputs[name] = predict_candidate(name, fit_candidate(name, fitted), scored)
        result.seconds[name] = round(time.perf_counter() - started, 1)
        say(f"fold {fold.index} ({fold.origin}): {name} in {result.seconds[name]} s")
    return result


def score(results: list[FoldResult]) -> dict:
    return backtest_score.score(results)


def backtest(frame: pd.DataFrame, model_types: list[str], origins: list[dt.date] | None = None,
             horizon_days: int = HORIZON_DAYS) -> tuple[list[FoldResult], dict]:
    unknown = [m for m in model_types if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model type(s) {unknown}; choose from {sorted(MODELS)}")
    names = list(model_types) + list(BASELINES)
    folds = make_folds(frame, origins, horizon_days)
    results = []
    for fold in folds:
        say(f"fold {fold.index}/{len(folds)} ({fold.name}): fit before {fold.origin}, score to "
            f"{fold.end - dt.timedelta(days=1)}")
        results.append(run_fold(frame, fold, names))
    return results, score(results)


def report(results: list[FoldResult], intervals: dict, config: dict) -> dict:
    """The JSON report. `summary` and `folds[*].scores` keep the shape the cards read
    (velocast.train.calibration); the rest is added beside them."""
    folds = [{"index": r.fold.index, "name": r.fold.name, "origin": r.fold.origin.isoformat(),
              "end": r.fold.end.isoformat(), "fit_rows": r.fit_rows,
              "scored_rows": r.scored_rows, "seconds": r.seconds, "scores": r.scores,
              "by_horizon": r.by_horizon, "by_day_type": r.by_day_type}
             for r in results]
    summary = backtest_score.summarize(results)
    candidates = [n for n in results[0].outputs if n in MODELS]
    return {
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "config": config,
        "fingerprints": {n: fingerprint(MODELS[n], pipeline.RECENCY_DAYS) for n in candidates},
        "interval": intervals,
        "summary": summary,
        "summary_by_horizon": backtest_score.summarize_nested(results, "by_horizon"),
        "summary_by_day_type": backtest_score.summarize_nested(results, "by_day_type"),
        "decisions": {f"{c} vs {b}": d for c in candidates for b in BASELINES
                      if (d := backtest_score.decide(folds, summary, c, b)) is not None},
        "folds": folds,
    }


def main(argv=None) -> int:
    from threadpoolctl import threadpool_limits  # noqa: PLC0415
    from velocast.train.data import load_counts  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m velocast.train.backtest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Paris export CSV (optionally .gz)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--origins", default="auto",
                        help="auto (the year's transitions) or comma-separated first scored days")
    parser.add_argument("--horizon-days", type=int, default=HORIZON_DAYS)
    parser.add_argument("--out", default="bench/backtest",
                        help="writes OUT.md, OUT.json and OUT.png")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP threads (1: HistGradientBoosting spin-waits on shared cores)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frame, _ = load_counts(args.data)
    origins = None if args.origins == "auto" else \
        [dt.date.fromisoformat(o.strip()) for o in args.origins.split(",")]
    config = {"data": Path(args.data).name, "origins": args.origins,
              "horizon_days": args.horizon_days, "models": args.models,
              "recency_days": pipeline.RECENCY_DAYS}
    with threadpool_limits(args.threads, user_api="openmp"):
        results, intervals = backtest(frame, [m.strip() for m in args.models.split(",")],
                                      origins, args.horizon_days)
    config["folds"] = len(results)
    data = report(results, intervals, config)
    text = backtest_report.markdown(data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    backtest_report.plot(data, out.with_suffix(".png"))
    print(text)
    say(f"done in {time.perf_counter() - started:.0f} s; wrote {out}.md/.json/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
