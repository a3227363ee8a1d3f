"""The transition backtest: every figure comes from rows its model never saw, per
horizon after the training end."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from velocast.core.local_time import PARIS
from velocast.train import backtest

from tests.conftest import ROOT, SAMPLE_END, SAMPLE_START, one_openmp_thread

FOLDS, HORIZON = 2, 10
ORIGINS = [SAMPLE_END - dt.timedelta(days=22), SAMPLE_END - dt.timedelta(days=10)]
MODEL_TYPES = ["gbdt", "rf", "nn", "affluence"]


def midnight(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), tzinfo=PARIS).timestamp()


@dataclass
class Spy:
    fits: list = field(default_factory=list)       # (name, epochs of every row fitted on)
    scores: list = field(default_factory=list)     # (name, epochs of every row scored)


@dataclass
class Run:
    spy: Spy
    out: object
    report: dict
    results: list


@pytest.fixture(scope="module")
def run(sample_csv, sample_frame, tmp_path_factory) -> Run:
    """The command on the synthetic sample, with the fit and predict steps spied on."""
    spy = Spy()
    real_fit, real_predict = backtest.fit_candidate, backtest.predict_candidate
    captured = []
    real_score = backtest.score

    def fit(name, part):
        spy.fits.append((name, part.frame["epoch"].to_numpy(), part.data.epoch.copy()))
        return real_fit(name, part)

    def predict(name, model, part):
        spy.scores.append((name, part.frame["epoch"].to_numpy(), part.data.epoch.copy()))
        return real_predict(name, model, part)

    def score(results):
        captured.extend(results)
        return real_score(results)

    out = tmp_path_factory.mktemp("backtest") / "bt"
    with pytest.MonkeyPatch.context() as mp, one_openmp_thread():
        mp.setattr(backtest, "fit_candidate", fit)
        mp.setattr(backtest, "predict_candidate", predict)
        mp.setattr(backtest, "score", score)
        assert backtest.main(["--data", str(sample_csv),
                              "--origins", ",".join(o.isoformat() for o in ORIGINS),
                              "--horizon-days", str(HORIZON),
                              "--models", ",".join(MODEL_TYPES), "--out", str(out)]) == 0
    return Run(spy, out, json.loads(out.with_suffix(".json").read_text()), captured)


def test_folds_forecast_the_horizon_from_each_origin_cut_at_the_datas_end(run):
    folds = [r.fold for r in run.results]
    assert [f.origin for f in folds] == ORIGINS
    assert [f.end for f in folds] == [ORIGINS[0] + dt.timedelta(days=HORIZON), SAMPLE_END]


def test_every_fit_uses_only_rows_before_its_folds_origin(run):
    names = MODEL_TYPES + list(backtest.BASELINES)
    assert len(run.spy.fits) == len(run.spy.scores) == FOLDS * len(names)
    for k, result in enumerate(run.results):
        origin, end = midnight(result.fold.origin), midnight(result.fold.end)
        fits = run.spy.fits[k * len(names):(k + 1) * len(names)]
        scores = run.spy.scores[k * len(names):(k + 1) * len(names)]
        assert [f[0] for f in fits] == [s[0] for s in scores] == names
        for (name, raw, prepared), (_, scored_raw, scored_prepared) in zip(fits, scores):
            assert max(raw.max(), prepared.max()) < origin, name
            assert origin <= min(scored_raw.min(), scored_prepared.min()), name
            assert max(scored_raw.max(), scored_prepared.max()) < end, name
        assert result.fitted_through < origin <= result.scored_from <= result.scored_to < end


def test_scores_are_recomputed_from_the_scored_rows_truth(run, sample_frame):
    for result in run.results:
        origin, end = midnight(result.fold.origin), midnight(result.fold.end)
        rows = sample_frame[(sample_frame["epoch"] >= origin) & (sample_frame["epoch"] < end)]
        truth = np.log1p(rows["count"].to_numpy())
        assert result.scored_rows == len(rows) == \
            (result.fold.end - result.fold.origin).days * 24 * rows["counter"].nunique()
        for name in ("gbdt", "rf", "nn", "naive", "plain_hgb"):
            predicted = result.outputs[name]["log"]
            rmse = float(np.sqrt(np.mean((truth - predicted) ** 2)))
            assert result.scores[name]["rmse_log"] == pytest.approx(rmse, rel=1e-12), name
        assert 0 < result.scores["affluence"]["f1_score"] <= 1


def offsets(residual):
    """The 9 % and 91 % residual quantiles (calibration.QUANTILE_LEVEL), widened to hold 0."""
    low, high = np.quantile(residual, [0.09, 0.91])
    return min(low, 0), max(high, 0)


def day_number(result) -> np.ndarray:
    """1 on the fold's origin (the first local day after the training rows)."""
    return np.array([(dt.datetime.fromtimestamp(e, tz=PARIS).date() - result.fold.origin).days + 1
                     for e in result.scored_epoch])


def test_errors_are_reported_per_horizon_bucket_from_the_origin(run):
    for result in run.results:
        day = day_number(result)
        residual = result.truth_log - result.outputs["gbdt"]["log"]
        for name, rows in (("day 1", day == 1), ("days 2-7", (day >= 2) & (day <= 7)),
                           ("days 8-31", day >= 8)):
            bucket = result.by_horizon["gbdt"][name]
            assert bucket["rows"] == rows.sum() > 0
            assert bucket["rmse_log"] == pytest.approx(np.sqrt(np.mean(residual[rows] ** 2)))
        assert sum(v["rows"] for v in result.by_day_type["gbdt"].values()) == result.scored_rows


def test_the_classifier_f1_is_reported_per_horizon_bucket_too(run):
    from sklearn.metrics import f1_score

    for result in run.results:
        day = day_number(result)
        busy = result.outputs["affluence"]["proba"] >= 0.5
        for name, rows in (("day 1", day == 1), ("days 2-7", (day >= 2) & (day <= 7)),
                           ("days 8-31", day >= 8)):
            bucket = result.by_horizon["affluence"][name]
            assert bucket["rows"] == rows.sum() > 0
            assert bucket["f1_score"] == pytest.approx(
                f1_score(result.truth_busy[rows], busy[rows], zero_division=0))
    assert "Affluence F1 by horizon" in run.out.with_suffix(".md").read_text()


def test_interval_offsets_per_horizon_come_from_the_other_folds(run):
    first, second = run.results
    predicted = first.outputs["gbdt"]["log"]
    inside = np.zeros(len(predicted), bool)
    other_day, other_residual = day_number(second), second.truth_log - second.outputs["gbdt"]["log"]
    for day, rows_other in ((day_number(first) == 1, other_day == 1),
                            ((day_number(first) >= 2) & (day_number(first) <= 7),
                             (other_day >= 2) & (other_day <= 7)),
                            (day_number(first) >= 8, other_day >= 8)):
        low, high = offsets(other_residual[rows_other])
        inside[day] = (first.truth_log[day] >= predicted[day] + low) & \
            (first.truth_log[day] <= predicted[day] + high)
    assert first.scores["gbdt"]["coverage"] == pytest.approx(inside.mean())
    both = np.concatenate([r.truth_log - r.outputs["gbdt"]["log"] for r in run.results])
    card = run.report["interval"]["gbdt"]
    assert card["level"] == 0.8
    assert (card["lower_log"], card["upper_log"]) == pytest.approx(offsets(both))
    assert [h["last_day"] for h in card["horizons"]] == [1, 7, 31]
    day_one = np.concatenate([(r.truth_log - r.outputs["gbdt"]["log"])[day_number(r) == 1]
                              for r in run.results])
    assert (card["horizons"][0]["lower_log"], card["horizons"][0]["upper_log"]) == \
        pytest.approx(offsets(day_one))


def test_the_report_has_per_fold_and_mean_tables_and_a_figure(run):
    text = run.out.with_suffix(".md").read_text()
    assert text.count("## Fold ") == FOLDS and "Mean ± sd" in text
    assert "RMSE log1p by horizon" in text and "| gbdt vs twenty_line |" in text
    for name in MODEL_TYPES + list(backtest.BASELINES):
        assert f"| {name} |" in text
    summary = run.report["summary"]
    rmse = [f["scores"]["gbdt"]["rmse_log"] for f in run.report["folds"]]
    assert summary["gbdt"]["rmse_log"] == pytest.approx([np.mean(rmse), np.std(rmse, ddof=1)])
    assert set(summary["affluence"]) >= {"f1_score", "accuracy", "roc_auc"}
    assert set(summary["plain_hgb"]) >= {"rmse_log", "mae", "r2", "coverage", "width", "f1_score"}
    assert run.out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_origin_without_enough_training_days_is_refused(sample_frame):
    with pytest.raises(ValueError, match="training days"):
        backtest.make_folds(sample_frame, [SAMPLE_START + dt.timedelta(days=3)])


def test_a_matching_report_puts_its_table_and_interval_in_the_card(run, sample_frame, sample_csv,
                                                                   tmp_path):
    from velocast.catalog import registry
    from velocast.catalog.store import LocalStore
    from velocast.train import calibration, pipeline

    with one_openmp_thread():
        (outcome,) = pipeline.train(sample_frame, str(tmp_path), ["rf"], 14, run.report,
                                    sample_csv.name)
    card = registry.read_card(LocalStore(tmp_path), outcome.published)
    assert card["backtest"]["mean_sd"]["rf"] == run.report["summary"]["rf"]
    assert card["backtest"]["fingerprint"] == calibration.fingerprint(pipeline.MODELS["rf"],
                                                                     pipeline.RECENCY_DAYS)
    assert set(card["backtest"]["mean_sd"]) == {"rf", "naive", "plain_hgb", "twenty_line"}
    assert card["backtest"]["decisions"]["twenty_line"] == run.report["decisions"]["rf vs twenty_line"]
    assert card["backtest"]["by_horizon"]["rf"] == run.report["summary_by_horizon"]["rf"]
    assert [f["origin"] for f in card["backtest"]["folds"]] == \
        [f["origin"] for f in run.report["folds"]]
    interval = run.report["interval"]["rf"]
    assert card["interval"]["horizons"] == interval["horizons"]
    assert (card["interval"]["lower_log"], card["interval"]["upper_log"]) == \
        (interval["lower_log"], interval["upper_log"])
    assert "backtest folds" in card["interval"]["calibration"]
    folds = [(f["scores"]["rf"]["rmse_log"], f["scores"]["plain_hgb"]["rmse_log"])
             for f in run.report["folds"]]
    won = sum(ours < plain for ours, plain in folds)
    assert card["backtest"]["folds_beating_plain_hgb"] == f"{won} of {len(folds)}"
    means = [run.report["summary"][n]["rmse_log"][0] for n in ("rf", "plain_hgb")]
    assert card["backtest"]["beats_plain_hgb"] == (means[0] < means[1])
    assert ("does NOT beat" in card["backtest"].get("note", "")) != (means[0] < means[1])


@pytest.mark.parametrize("change, reason", [
    (lambda r: r.update(feature_spec_version="0"), "feature spec"),
    (lambda r: r["config"].update(data="other.csv"), "other.csv"),
    (lambda r: r["fingerprints"].update(rf="0" * 16), "configured differently"),
])
def test_a_report_of_other_data_or_models_is_not_put_in_the_card(run, sample_csv, change, reason):
    import copy

    from velocast.train import calibration, pipeline

    report = copy.deepcopy(run.report)
    change(report)
    fingerprint = calibration.fingerprint(pipeline.MODELS["rf"], pipeline.RECENCY_DAYS)
    assert calibration.why_not(run.report, "rf", sample_csv.name, fingerprint) == ""
    assert reason in calibration.why_not(report, "rf", sample_csv.name, fingerprint)
    fields = calibration.card_fields(report, "rf", "regress", sample_csv.name, fingerprint,
                                     np.array([-1.0, 0.5, 2.0]), {"from": "a", "to": "b"})
    assert "backtest" not in fields and "holdout" in fields["interval"]["calibration"]


def fold(name: str, ours: float, baseline: float) -> dict:
    return {"name": name, "scores": {"gbdt": {"rmse_log": ours}, "twenty_line": {"rmse_log": baseline}}}


@pytest.mark.parametrize("folds, kept", [
    ([fold("a", 0.50, 0.60), fold("b", 0.60, 0.59)], True),     # one fold worse within 0.02
    ([fold("a", 0.40, 0.60), fold("b", 0.65, 0.60)], False),    # better mean, one fold 0.05 worse
    ([fold("a", 0.61, 0.60), fold("b", 0.60, 0.60)], False),    # no fold worse by much, mean not better
])
def test_a_change_is_kept_only_if_better_on_the_mean_and_within_the_margin_on_every_fold(folds, kept):
    from velocast.train.backtest_score import decide, summarize

    class Result:
        def __init__(self, f):
            self.scores = f["scores"]

    verdict = decide(folds, summarize([Result(f) for f in folds]), "gbdt", "twenty_line")
    assert verdict["kept"] is kept
    assert verdict["worst_fold"] == max(folds, key=lambda f: f["scores"]["gbdt"]["rmse_log"]
                                        - f["scores"]["twenty_line"]["rmse_log"])["name"]


def test_the_years_transitions_are_the_default_origins():
    """Holiday returns (the Saturday before), the summer start, an outage's recovery."""
    rows = []
    for day in range(343):   # 2020-09-01 .. 2021-08-09, one counter in outage Jan 25-Feb 23
        date = dt.date(2020, 9, 1) + dt.timedelta(days=day)
        for counter in ("a", "b"):
            down = counter == "b" and dt.date(2021, 1, 25) <= date < dt.date(2021, 2, 24)
            rows.append({"counter": counter, "epoch": midnight(date) + 12 * 3600,
                         "count": 1.0 if down else 100.0})
    import pandas as pd

    folds = backtest.make_folds(pd.DataFrame(rows))
    assert [(f.origin, f.end) for f in folds] == [
        (dt.date(2020, 10, 31), dt.date(2020, 12, 1)), (dt.date(2021, 1, 2), dt.date(2021, 2, 2)),
        (dt.date(2021, 2, 13), dt.date(2021, 3, 16)), (dt.date(2021, 2, 27), dt.date(2021, 3, 30)),
        (dt.date(2021, 4, 24), dt.date(2021, 5, 25)), (dt.date(2021, 7, 1), dt.date(2021, 8, 1))]
    assert [f.name for f in folds][2] == "outage: b back on 2021-02-24"


def test_the_committed_report_describes_every_model_as_configured_now():
    """`make train` copies bench/backtest.json into the cards only for a matching
    configuration: a change to a model left without a new `make backtest` would leave
    its cards without the figures the catalog ranks by."""
    from velocast.core.features import FEATURE_SPEC_VERSION
    from velocast.train import calibration, pipeline

    report = json.loads((ROOT / "bench" / "backtest.json").read_text())
    assert report["feature_spec_version"] == FEATURE_SPEC_VERSION
    assert report["fingerprints"] == {
        name: calibration.fingerprint(spec, pipeline.RECENCY_DAYS)
        for name, spec in pipeline.MODELS.items()}
