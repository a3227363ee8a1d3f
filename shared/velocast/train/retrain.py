"""The daily loop: ingest, score the served models on what arrived since (live
accuracy), fit a candidate per model type on every whole day but the newest, score it
and the served champion on that newest day (seen by neither), check its answers on a
reference panel (`velocast.train.gate`), and publish and promote *that* candidate when
it is not worse by more than TOLERANCE and passes the gate.

    python -m velocast.retrain --store URI [--source URL] [--models gbdt,affluence]

Why the published model is the scored one: the comparison used to fit the challenger
on the champion's own rows, so the two scored identically (62 of 62 daily comparisons
equal to 4 decimals) and every retrain promoted; the model then refitted on all rows,
poison included, was published unscored. Now the candidate has one more day of data
than yesterday's champion and is judged on a day neither saw; the price is that the
served model's data end one day before the newest ingested day.

Whole days only: a newest day with a few hours ingested flagged 6 of 52 counters as
outages and made a comparison on 104 night rows. Each model type retrains when its
champion has not seen the candidate's days (a task's promotion does not hold back the
other's).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from velocast import catalog

from velocast.core import paris_calendar, tasks

from velocast.catalog import promotions, registry
from velocast.catalog.store import Store, open_store
from velocast.train import calibration, counts, export, gate, scoring
from velocast.train.ingest import IngestReport, ingest
from velocast.train.pipeline import (MODELS, RECENCY_DAYS, Outcome, data_range, evaluate, fit,
                                     prepare, prepare_split, publish_fitted, say)

# Relative: a candidate whose default metric (rmse_log, f1_score) is within 2% of the
# champion's on the same day is promoted. Day-to-day noise of rmse_log on a 7-day
# holdout of the real data is about that size (0.61-0.64 across weeks).
TOLERANCE = 0.02
HOLDOUT_DAYS = 1
WINDOW_DAYS = 396
# The newest Paris day counts as whole once its 23:00 hour is stored.
LAST_HOUR = 23


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
        if not self.candidate:
            return f"{self.task}/{self.model_type}: kept champion ({self.reason})"
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
    newest whole day counted nothing (functions warn on their predictions)."""
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


def whole_days(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of whole Paris days: the newest day goes unless its last hour is in."""
    days = scoring.day_of(frame)
    newest = days.max()
    last = pd.Timestamp(int(frame["epoch"].max()), unit="s", tz="UTC").tz_convert("Europe/Paris")
    if last.hour >= LAST_HOUR:
        return frame
    say(f"newest day {newest} is partial (up to {last:%H:%M} Paris time): left for the next run")
    return frame[days < newest]


def not_worse(candidate: float, champion: float, metric: str, tolerance: float) -> bool:
    if registry.METRIC_DIRECTIONS[metric] == "min":
        return candidate <= champion * (1 + tolerance)
    return candidate >= champion * (1 - tolerance)


def _snapshots(store: Store) -> dict:
    return {task: catalog.Snapshot.read(store, task) for task in tasks.TASK_NAMES}


def _champions(store: Store, snapshots: dict | None = None) -> dict:
    """(task, model type) -> the served model, loaded as the functions load it
    (hashes, card, feature spec, canary)."""
    loaded = {}
    for task, snapshot in (snapshots or _snapshots(store)).items():
        for model_type, entry in snapshot.served_by_type().items():
            try:
                loaded[(task, model_type)] = catalog.load(store, entry)
            except Exception as exc:  # noqa: BLE001  (a refused model is not a champion)
                say(f"cannot load served {task}/{model_type} {entry.version}: {exc}")
    return loaded


def _references(store: Store, snapshots: dict, champions: dict) -> list:
    """Per (task, type), the oldest model `make train` published, when it is not the
    champion: scored beside it, it shows what the daily retrains bought."""
    out = []
    for task, snapshot in snapshots.items():
        static = [e for e in snapshot.entries if not e.run]
        for model_type in sorted({e.model_type for e in static}):
            oldest = min((e for e in static if e.model_type == model_type), key=lambda e: e.version)
            champion = champions.get((task, model_type))
            if champion is None or champion.entry.version == oldest.version:
                continue
            try:
                out.append(catalog.load(store, oldest))
            except Exception as exc:  # noqa: BLE001  (a reference is optional)
                say(f"cannot load reference {task}/{model_type} {oldest.version}: {exc}")
    return out


def _live(store: Store, frame: pd.DataFrame, run: str, champions: dict, references: list,
          report) -> None:
    """Score what is served now on the actuals that arrived after its training, and
    the never-retrained reference models on the same days."""
    newest_day = str(scoring.day_of(frame).max())
    for task in tasks.TASK_NAMES:
        models = [scoring.live_accuracy(model, frame) for (t, _), model in champions.items() if t == task]
        models += [{**scoring.live_accuracy(model, frame), "reference": True}
                   for model in references if model.entry.task == task]
        if models:
            report.live.append(scoring.write_live(store, task, run, models, newest_day))


def carried_backtest(champion, fingerprint: str) -> dict:
    """The champion's backtest section, carried into the candidate's card: the served
    default is chosen on backtest means (velocast.catalog), which a daily retrain does
    not recompute. Only when the candidate is configured as the backtested model was
    (calibration.fingerprint): a new configuration's refit must not wear the figures of
    the one it replaces (issue 22: the blended classifier after the single one)."""
    section = (champion.card.get("backtest") if champion is not None else None) or {}
    if not section or section.get("fingerprint") != fingerprint:
        return {}
    return {"backtest": {**section, "carried_over_from": champion.entry.version}}


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
    stored = counts.load_window(counts_store, window_days)
    newest_hour = dt.datetime.fromtimestamp(int(stored["epoch"].max()), dt.timezone.utc).isoformat()
    frame = whole_days(stored)
    days = scoring.day_of(frame)
    kept_days = sorted(set(days))
    if len(kept_days) <= holdout_days:
        raise ValueError(f"need more than {holdout_days} whole ingested day(s); have {len(kept_days)}")
    run = registry.new_version()
    snapshots = _snapshots(store)   # one read of the registry and promotions per run
    champions = _champions(store, snapshots)
    _live(store, frame, run, champions, _references(store, snapshots, champions), report)

    first_holdout = kept_days[-holdout_days]
    fit_rows, holdout_rows = frame[days < first_holdout], frame[days >= first_holdout]
    report.holdout = {**data_range(holdout_rows), "newest_hour": newest_hour}
    fit_to = data_range(fit_rows)["to"]
    fit_rows, table, train_part, holdout = prepare_split(fit_rows, holdout_rows)
    counts_holdout = holdout_rows["count"].to_numpy(dtype=np.float64)
    reference = gate.panel(table, report.holdout["to"])
    source_note = {**report.holdout, "note": (
        f"the newest {holdout_days} whole day(s), seen by neither this model nor the champion "
        "it was compared with; this model is the one scored (fitted on the days before)")}
    card_extra = {"run": run, "promotion": {"tolerance": tolerance, "holdout": report.holdout},
                  **card_extras(frame), **(extra_card(frame) if extra_card else {})}
    by_task: dict[str, list[Decision]] = {}
    for step, model_type in enumerate(model_types, 1):
        spec = MODELS[model_type]
        metric = registry.DEFAULT_METRIC[spec.task]
        prefix = f"[{step}/{len(model_types)}] {model_type}"
        champion = champions.get((spec.task, model_type))
        decision = Decision(spec.task, model_type, metric, {})
        by_task.setdefault(spec.task, []).append(decision)
        if champion is not None and champion.entry.trained_to[:10] >= fit_to:
            decision.reason = (f"nothing new: the champion was trained to "
                               f"{champion.entry.trained_to[:10]}, the candidate would be to {fit_to}")
            say(decision.line())
            continue
        say(f"{prefix}: fitting on {len(train_part.matrix):,} rows to {fit_to}")
        estimator = fit(spec, train_part)
        decision.candidate = evaluate(spec, estimator, holdout)
        ok, decision.reason = True, "no served model of this type yet"
        if champion is not None:
            output = champion.output(prepare(holdout_rows, champion.table).matrix)
            decision.champion = champion.entry
            # One truth for both: "busy" by the candidate's table, fitted on the same rows.
            decision.champion_metrics = scoring.metrics_for(spec.task, output, counts_holdout,
                                                            holdout.busy)
            ok = not_worse(decision.candidate[metric], decision.champion_metrics[metric],
                           metric, tolerance)
            decision.reason = (f"within {tolerance:.0%} of the champion" if ok else
                               f"worse than the champion by more than {tolerance:.0%}")
        verdict = gate.check(spec.task, reference, gate.predictor(estimator, table, spec.task),
                             None if champion is None else
                             gate.predictor(champion, champion.table, spec.task), fit_rows,
                             None if champion is None else set(table.names) & set(champion.table.names))
        decision.reason += f"; panel: {verdict.reason}"
        if ok and verdict.ok:
            outcome = Outcome(model_type, decision.candidate)
            residuals = (holdout.log_count - export.sklearn_output(estimator, holdout.matrix,
                                                                     spec.task)
                         if spec.kind.interval else None)
            interval = calibration.card_fields(None, model_type, spec.task, "", "", residuals,
                                               report.holdout)
            publish_fitted(store, model_type, outcome, estimator, table, holdout.matrix,
                           source_note, fit_rows, prefix,
                           {**card_extra, **interval, **carried_backtest(
                               champion, calibration.fingerprint(spec, RECENCY_DAYS))})
            decision.published = outcome.published
            if outcome.refused:
                decision.reason += f"; not published: {outcome.refused}"
        elif not verdict.ok:
            decision.reason = f"REFUSED by the reference panel: {verdict.reason}"
        decision.promoted = decision.published is not None
        say(decision.line())
    report.decisions = [d for ds in by_task.values() for d in ds]

    for task, decisions in by_task.items():
        if any(d.promoted for d in decisions):
            report.promotions.append(_promote(store, task, run, decisions, champions, report.holdout,
                                              tolerance))
    report.seconds = time.perf_counter() - started
    return report


def _promote(store: Store, task: str, run: str, decisions: list[Decision], champions: dict,
             holdout: dict, tolerance: float) -> str:
    """One promotion object: every type's served entry from now on, with the figures
    of this run's comparison (the same day for all)."""
    served = {}
    for d in decisions:
        if d.promoted:
            served[d.model_type] = {"version": d.published.version, "promoted": True,
                                    "metrics": d.candidate}
        elif d.champion is not None and d.champion_metrics:
            served[d.model_type] = {"version": d.champion.version, "promoted": False,
                                    "metrics": d.champion_metrics}
    for (t, model_type), champion in champions.items():
        if t == task and model_type not in served:   # not retrained this run: kept as is
            served[model_type] = {"version": champion.entry.version, "promoted": False, "metrics": {}}
    for item in served.values():
        item["metrics"] = {k: v for k, v in item["metrics"].items() if np.isfinite(v)}
    promotion = promotions.Promotion(task, run, served, {**holdout, "tolerance": tolerance},
                                     dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    promotions.write_promotion(store, promotion)
    return promotion.path
