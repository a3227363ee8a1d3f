"""The daily loop: ingest, score the served models on what arrived since (live
accuracy), fit challengers, score them and the served champions on the same newest
held-out days, promote the challengers that are not worse by more than TOLERANCE on
the task's default metric, refit the promoted ones on every row, publish, and write
one promotion object per task.

    python -m velocast.retrain --store URI [--source URL] [--models gbdt,affluence]

Fairness: the held-out days are only days that no served model was trained on (after
the newest champion's training day, at most HOLDOUT_DAYS), and the challenger is
fitted on the rows before them. With a daily schedule that is the newest day: the
challenger then has the champion's data plus late corrections, so the comparison
catches a retrain broken by bad data or code rather than rewarding the one that saw
the answers.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from velocast import paris_calendar, promotions, registry
from velocast.store import Store, StoreError, open_store
from velocast.train import calibration, counts, export, scoring
from velocast.train.ingest import IngestReport, ingest
from velocast.train.pipeline import (MODELS, Outcome, _range, drop_outages, evaluate, fit,
                                     fit_table, finalize, prepare, say, split_holdout)

# Relative: a challenger whose default metric (rmse_log, f1_score) is within 2% of
# the champion's on the same rows is promoted. Day-to-day noise of rmse_log on a
# 7-day holdout of the real data is about that size (0.61-0.64 across weeks).
TOLERANCE = 0.02
HOLDOUT_DAYS = 7
WINDOW_DAYS = 396


@dataclass
class Decision:
    task: str
    model_type: str
    metric: str
    candidate: dict
    champion: registry.Entry | None = None
    champion_metrics: dict | None = None
    promoted: bool = False
    reason: str = ""
    published: registry.Entry | None = None

    def line(self) -> str:
        c = self.candidate.get(self.metric)
        h = (self.champion_metrics or {}).get(self.metric)
        champ = f"champion {self.champion.version} {h:.4f}" if self.champion and h is not None \
            else "no champion"
        verdict = f"PROMOTED {self.published.version}" if self.published else "kept champion"
        return (f"{self.task}/{self.model_type}: {self.metric} challenger {c:.4f} vs {champ}: "
                f"{verdict} ({self.reason})")


@dataclass
class RetrainReport:
    ingest: IngestReport | None = None
    holdout: dict = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    promotions: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def text(self) -> str:
        lines = [self.ingest.line()] if self.ingest else []
        lines.append(f"holdout {self.holdout.get('from')} to {self.holdout.get('to')} "
                     f"({self.holdout.get('rows', 0):,} rows)")
        lines += [d.line() for d in self.decisions]
        lines.append(f"promotions written: {', '.join(self.promotions) or 'none'}; "
                     f"live accuracy: {', '.join(self.live) or 'none'}; {self.seconds:.0f} s")
        return "\n".join(lines)


def card_extras(frame: pd.DataFrame) -> dict:
    """What the card records beyond the pipeline's: calendar coverage, and counters whose
    newest day in the window counted nothing (functions warn on their predictions)."""
    day = scoring.day_of(frame)
    daily = frame.assign(day=day).groupby(["counter", "day"])["count"].sum().reset_index()
    newest = daily.sort_values("day").groupby("counter").tail(1)
    return {
        "calendar": {
            "school_holidays_zone_c_until": paris_calendar.school_calendar_until().isoformat(),
            "school_holidays_source": "Education ministry calendars to 2026-08-31, then the "
                                      "vacances-scolaires-france package's CSV; later dates by rule",
            "public_holidays": "computed (fixed dates and Easter rules), checked against the "
                               "holidays package to 2040 in tests",
        },
        "counter_table": {"outages": {str(r.counter): str(r.day)
                                      for r in newest.itertuples() if r.count == 0}},
    }


def unseen_holdout_days(frame: pd.DataFrame, champions: dict, holdout_days: int) -> int:
    """The newest `holdout_days` days, cut to the days no served model was trained on.
    A champion refitted up to yesterday has seen most of a 7-day holdout: scored there,
    it beat every challenger of a simulated month by 10-15% rmse_log (0.88 vs 1.00),
    so nothing fresh was ever promoted. One holdout for every model of the run, so that
    the promotion's figures all come from the same rows."""
    if not champions:
        return holdout_days
    newest = dt.date.fromisoformat(str(scoring.day_of(frame).max()))
    seen_to = max(dt.date.fromisoformat(m.entry.trained_to[:10]) for m in champions.values())
    return max(0, min(holdout_days, (newest - seen_to).days))


def not_worse(candidate: float, champion: float, metric: str, tolerance: float) -> bool:
    if registry.METRIC_DIRECTIONS[metric] == "min":
        return candidate <= champion * (1 + tolerance)
    return candidate >= champion * (1 - tolerance)


def _live(store: Store, frame: pd.DataFrame, run: str, report: RetrainReport) -> dict:
    """Score what is served now on the newer actuals; returns the loaded champions."""
    loaded = {}
    newest_day = str(scoring.day_of(frame).max())
    for task in registry.TASKS:
        models = []
        for model_type, entry in scoring.served_now(store, task).items():
            try:
                loaded[(task, model_type)] = model = scoring.ServedModel(store, entry)
            except (StoreError, ValueError, KeyError) as exc:
                say(f"cannot read served {task}/{model_type} {entry.version}: {exc}")
                continue
            models.append(scoring.live_accuracy(model, frame))
        if models:
            report.live.append(scoring.write_live(store, task, run, models, newest_day))
    return loaded


def retrain(store_uri: str, source: str | None = None, model_types=None, *,
            window_days: int = WINDOW_DAYS, holdout_days: int = HOLDOUT_DAYS,
            tolerance: float = TOLERANCE, ingest_options: dict | None = None,
            extra_card=None, counts_uri: str | None = None) -> RetrainReport:
    """Models, promotions and live accuracy go to `store_uri`; the ingested counts to
    `counts_uri` (default: the same store; in the cloud, the data bucket)."""
    started = time.perf_counter()
    store = open_store(store_uri)
    counts_store = open_store(counts_uri) if counts_uri else store
    model_types = list(model_types or MODELS)
    report = RetrainReport()
    if source:
        report.ingest = ingest(counts_store, source, **(ingest_options or {}))
        say(report.ingest.line())
    frame = counts.load_window(counts_store, window_days)
    run = registry.new_version()
    champions = _live(store, frame, run, report)

    holdout_days = unseen_holdout_days(frame, champions, holdout_days)
    if holdout_days == 0:
        say("no ingested day is newer than the served models' training: nothing to compare")
        report.seconds = time.perf_counter() - started
        return report
    fit_rows, holdout_rows = split_holdout(frame, holdout_days)
    if fit_rows.empty or holdout_rows.empty:
        raise ValueError(f"need more than {holdout_days} ingested days for a {holdout_days}-day holdout")
    report.holdout = _range(holdout_rows)
    fit_rows = drop_outages(fit_rows)
    table = fit_table(fit_rows)
    train_part, holdout = prepare(fit_rows, table), prepare(holdout_rows, table)
    counts_holdout = holdout_rows["count"].to_numpy(dtype=np.float64)

    all_rows = drop_outages(frame)
    final = prepare(all_rows, fit_table(all_rows))
    parity_rows = prepare(holdout_rows, final.table).matrix
    source_note = {**report.holdout, "note": (
        f"last {holdout_days} days, scored by a model fitted on the rows before them, next to "
        "the served champion on the same rows; the published model was refitted on all rows")}
    card_extra = {"promotion": {"tolerance": tolerance, "holdout": report.holdout},
                  **card_extras(frame), **(extra_card(frame) if extra_card else {})}
    by_task: dict[str, list[Decision]] = {}
    for step, model_type in enumerate(model_types, 1):
        spec = MODELS[model_type]
        metric = registry.DEFAULT_METRIC[spec.task]
        prefix = f"[{step}/{len(model_types)}] {model_type}"
        say(f"{prefix}: fitting on {len(train_part.matrix):,} rows before the holdout")
        estimator = fit(spec, train_part)
        decision = Decision(spec.task, model_type, metric, evaluate(spec, estimator, holdout))
        champion = champions.get((spec.task, model_type))
        if champion is not None:
            output, _ = champion.output(holdout_rows)
            # One truth for both: "busy" by the challenger's table, fitted on the same rows.
            decision.champion = champion.entry
            decision.champion_metrics = scoring.metrics_for(spec.task, output, counts_holdout,
                                                            holdout.busy)
            ok = not_worse(decision.candidate[metric], decision.champion_metrics[metric],
                           metric, tolerance)
            decision.reason = (f"within {tolerance:.0%} of the champion" if ok else
                               f"worse than the champion by more than {tolerance:.0%}")
        else:
            ok, decision.reason = True, "no served model of this type yet"
        if ok:
            outcome = Outcome(model_type, decision.candidate)
            # The daily loop has no backtest report: a regressor's 80 % interval comes from
            # its residuals on the same held-out days (calibration.card_fields says so).
            residuals = (holdout.log_count - export.sklearn_output(estimator, holdout.matrix,
                                                                     "regress")
                         if spec.task == "regress" else None)
            interval = calibration.card_fields(None, model_type, spec.task, "", "", residuals,
                                               report.holdout)
            finalize(store, model_type, outcome, final, parity_rows, source_note, all_rows,
                     prefix, {**card_extra, **interval})
            decision.published = outcome.published
            if outcome.refused:
                decision.reason += f"; not published: {outcome.refused}"
        decision.promoted = decision.published is not None
        say(decision.line())
        by_task.setdefault(spec.task, []).append(decision)
    report.decisions = [d for ds in by_task.values() for d in ds]

    for task, decisions in by_task.items():
        if not any(d.promoted for d in decisions):
            continue
        served = {}
        for (t, model_type), champion in champions.items():
            if t != task:
                continue
            output, _ = champion.output(holdout_rows)
            busy = holdout.busy
            served[model_type] = {"version": champion.entry.version, "promoted": False,
                                  "metrics": scoring.metrics_for(task, output, counts_holdout, busy)}
        for d in decisions:
            if d.promoted:
                served[d.model_type] = {"version": d.published.version, "promoted": True,
                                        "metrics": d.candidate}
        for item in served.values():
            item["metrics"] = {k: v for k, v in item["metrics"].items() if np.isfinite(v)}
        promotion = promotions.Promotion(
            task, run, served, {**report.holdout, "tolerance": tolerance},
            dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        promotions.write_promotion(store, promotion)
        report.promotions.append(promotion.path)
    report.seconds = time.perf_counter() - started
    return report
