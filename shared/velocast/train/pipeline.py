"""Offline training: time-based holdout metrics, final fit on all rows, ONNX export,
parity gate, publication to the model store.

    python -m velocast.train --data FILE --store DIR_OR_GS_URI [--models gbdt,rf,nn,affluence]
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestRegressor)
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from velocast.core import recent_level, tasks

from velocast.catalog import registry
from velocast.core.features import (FEATURE_NAMES, FEATURE_SPEC_VERSION, CounterTable, Records,
                                    build_matrix)
from velocast.core.local_time import PARIS
from velocast.catalog.store import Store, open_store
from velocast.train import calibration, export
from velocast.train.metrics import classification_metrics, regression_metrics

MAX_ONNX_BYTES = 5 * 1024 * 1024
OFFSET_COLUMN = FEATURE_NAMES.index("counter_recent")
# Rows are weighted exp(-age / RECENCY_DAYS), age counted back from the newest row.
# Traffic drifts (the 2020-21 restrictions fading, cycling growing), so recent weeks
# say more about the coming ones. Backtest (3 folds, feature spec 2 gbdt): 90 days
# 0.685 RMSE log1p, no weight 0.708.
RECENCY_DAYS = 90.0


def _gbdt():
    # No categorical_features: skl2onnx converts those without error but wrongly.
    return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.08, max_leaf_nodes=63,
                                         l2_regularization=1.0, early_stopping=False,
                                         random_state=0)


def _rf():
    # Leaf count and tree count bound the ONNX file (about 5 MB at 130k nodes).
    return RandomForestRegressor(n_estimators=30, max_leaf_nodes=1500, min_samples_leaf=5,
                                 max_features=0.5, max_samples=0.5, n_jobs=-1, random_state=0)


def _nn():
    # Fixed epochs rather than early stopping on a random 10 % split: as good on the
    # backtest (6 folds, seeds 0/1/2: 0.727/0.738/0.731 RMSE log1p) and as long every run.
    return make_pipeline(StandardScaler(), MLPRegressor(
        hidden_layer_sizes=(32, 32), batch_size=512, learning_rate_init=2e-3, alpha=1e-2,
        max_iter=12, early_stopping=False, random_state=0))


def _affluence():
    # Busy hours are 44 % of rows; weighting both classes equally: 6 folds F1 0.844 ->
    # 0.850 (4 folds better), mean P(busy) 0.466 for a 0.444 rate, Brier 0.1037 -> 0.1045.
    # The plain HGB classifier weighted alike scores 0.843.
    return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.08, max_leaf_nodes=63,
                                          l2_regularization=1.0, early_stopping=False,
                                          class_weight="balanced", random_state=0)


@dataclass(frozen=True)
class ModelSpec:
    model_type: str             # one of a Task's model_types, which says its task
    make: object
    description: str
    # scikit-learn's MLP trains on one core: a fixed random subset keeps it to seconds.
    max_rows: int | None = None
    weighted: bool = True       # recency weights (RECENCY_DAYS)
    offset: bool = True         # learn log1p(count) - counter_recent (a regressor)
    hidden: tuple[str, ...] = ()   # features the estimator does not see
    # A classifier made of one member per entry, each also blind to its features; the
    # model's P(busy) is their mean (export.Blend).
    blend: tuple[tuple[str, ...], ...] = ((),)

    @property
    def task(self) -> str:
        return tasks.MODEL_TASK[self.model_type]

    @property
    def kind(self) -> tasks.Kind:
        return tasks.get(self.task).kind


# Less than a year of rows: the day-of-year circle after an origin is one no training
# row had, and the recent level and school holidays carry the season better. Hidden,
# 6 folds RMSE log1p: gbdt 0.638 -> 0.625 (5 folds better), rf 0.701 -> 0.693; the
# classifier, which has neither offset nor trend, needs it (F1 0.844 -> 0.815 without).
NO_SEASON = ("doy_sin", "doy_cos")

MODELS = {
    "gbdt": ModelSpec("gbdt", _gbdt, "HistGradientBoostingRegressor on log1p(count) - counter_recent",
                      hidden=NO_SEASON),
    "rf": ModelSpec("rf", _rf, "RandomForestRegressor on log1p(count) - counter_recent",
                    hidden=NO_SEASON),
    # An MLP extrapolates where a tree stays flat, so it does not see the day trend
    # either. With the offset and the recency weight: 6 folds 0.830 -> 0.727 RMSE log1p
    # (plain HGB 0.734), level rather than better. 64x64 units, 150k rows, 80 epochs,
    # 5 bagged nets, one-hot hours or a profile offset did no better.
    "nn": ModelSpec("nn", _nn, "StandardScaler + MLPRegressor on log1p(count) - counter_recent",
                    max_rows=120_000, hidden=("days", *NO_SEASON)),
    # Without "days" and "counter_recent": 6 folds F1 0.8435, with them 0.8371.
    # The day of year lifts the spring return and the summer start (F1 0.876/0.852, blind
    # 0.810/0.789) but, with less than a year of rows, reads the month after Christmas
    # as the holidays (0.462, blind 0.750). The mean of both, transition folds: F1 mean
    # 0.7621 -> 0.8142, ahead of the plain HGB and the 20-line model on every fold.
    "affluence": ModelSpec("affluence", _affluence,
                           "mean of two HistGradientBoostingClassifiers, one blind to the "
                           "day of year: count above the counter's mean",
                           hidden=("days", "counter_recent"), blend=((), NO_SEASON)),
}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def local_date(epoch: float) -> dt.date:
    return dt.datetime.fromtimestamp(epoch, tz=PARIS).date()


def drop_outages(frame: pd.DataFrame, partial: bool = True) -> pd.DataFrame:
    """Counter-days with no bike at all are sensor outages, not traffic: left in, they
    drag a counter's learned level down for good (one counter had 72 such days).
    `partial`: also the days far below the counter's profile (recent_level.OUTAGE_LOG,
    under 30 % of its usual traffic for that day type and hour), a half-broken sensor
    or a dip that, learnt, drags the next month's forecast down (issue 22)."""
    day = pd.to_datetime(frame["epoch"], unit="s", utc=True).dt.tz_convert(PARIS).dt.date
    daily = frame.groupby([frame["counter"], day])["count"].transform("sum")
    outage = daily.to_numpy() == 0
    if partial and len(frame):
        outage |= recent_level.partial_outage_rows(frame["counter"].to_numpy(),
                                                   frame["epoch"].to_numpy(),
                                                   frame["count"].to_numpy(), ~outage)
    if outage.any():
        say(f"ignoring {int(outage.sum()):,} rows in counter-days without or with almost no "
            "count (sensor outages)")
    return frame[~outage]


def split_holdout(frame: pd.DataFrame, holdout_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last `holdout_days` local days are the holdout; never a random split."""
    last_day = local_date(float(frame["epoch"].max()))
    first_holdout_day = last_day - dt.timedelta(days=holdout_days - 1)
    cut = dt.datetime.combine(first_holdout_day, dt.time(), tzinfo=PARIS).timestamp()
    return frame[frame["epoch"] < cut], frame[frame["epoch"] >= cut]


def prepare_split(fit_rows: pd.DataFrame, holdout_rows: pd.DataFrame):
    """The one recipe for a holdout, training's and the daily retrain's: outage days
    out of the fitted rows, the counter table fitted on them, both sides featurized
    with it. Returns (fitted rows, table, fitted part, holdout part)."""
    fit_rows = drop_outages(fit_rows)
    table = fit_table(fit_rows)
    return fit_rows, table, prepare(fit_rows, table), prepare(holdout_rows, table)


@dataclass
class Prepared:
    table: CounterTable
    matrix: np.ndarray
    log_count: np.ndarray
    busy: np.ndarray
    epoch: np.ndarray
    mean_count: np.ndarray      # each row's affluence threshold

    @property
    def recency_weight(self) -> np.ndarray:
        age_days = (self.epoch.max() - self.epoch) / 86400.0
        return np.exp(-age_days / RECENCY_DAYS)


def prepare(frame: pd.DataFrame, table: CounterTable) -> Prepared:
    batch = build_matrix(Records(frame["counter"].tolist(), frame["epoch"].to_numpy(),
                                 frame["latitude"].to_numpy(), frame["longitude"].to_numpy()), table)
    counts = frame["count"].to_numpy(dtype=np.float64)
    return Prepared(table, batch.matrix, np.log1p(counts),
                    (counts > batch.mean_count).astype(np.int64),
                    frame["epoch"].to_numpy(dtype=np.float64), batch.mean_count)


def fit_table(frame: pd.DataFrame) -> CounterTable:
    return CounterTable.fit(frame["counter"].to_numpy(), frame["epoch"].to_numpy(),
                            frame["latitude"].to_numpy(), frame["longitude"].to_numpy(),
                            frame["count"].to_numpy())


def fit(spec: ModelSpec, data: Prepared):
    target = data.busy if spec.kind.classifier else data.log_count
    matrix = data.matrix
    weight = data.recency_weight if spec.weighted else np.ones(len(matrix))
    if spec.max_rows and len(matrix) > spec.max_rows:
        rows = np.sort(np.random.default_rng(0).choice(len(matrix), spec.max_rows, replace=False))
        matrix, target, weight = matrix[rows], target[rows], weight[rows]
    offset = OFFSET_COLUMN if not spec.kind.classifier and spec.offset else None
    if offset is not None:   # relative to the counter's recent level (features.py)
        target = target - matrix[:, offset]
    hidden = set(spec.hidden) | ({FEATURE_NAMES[offset]} if offset is not None else set())
    members = [_fit_one(spec, matrix, target, weight, hidden | set(blind), offset)
               for blind in spec.blend]
    return export.Blend(tuple(members)) if len(members) > 1 else members[0]


def _fit_one(spec: ModelSpec, matrix, target, weight, hidden: set, offset: int | None):
    kept = tuple(i for i, name in enumerate(FEATURE_NAMES) if name not in hidden)
    estimator = spec.make()
    with warnings.catch_warnings():
        # The MLP's epoch count is chosen on the backtest; "not converged" says nothing.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if hasattr(estimator, "steps"):  # a Pipeline routes the weight to its last step
            estimator.fit(matrix[:, kept], target,
                          **{f"{estimator.steps[-1][0]}__sample_weight": weight})
        else:
            estimator.fit(matrix[:, kept], target, sample_weight=weight)
    return export.Subset(estimator, kept, offset) if hidden else estimator


def evaluate(spec: ModelSpec, estimator, data: Prepared) -> dict:
    output = export.sklearn_output(estimator, data.matrix, spec.task)
    return kind_metrics(spec.kind, data, output)


def kind_metrics(kind: tasks.Kind, data: Prepared, output: np.ndarray) -> dict:
    """A task kind's metrics of `output` (log1p count or P(busy)) against `data`'s truth."""
    if kind.classifier:
        return classification_metrics(data.busy, output)
    return regression_metrics(data.log_count, output)


def library_versions() -> dict:
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn
    return {"python": platform.python_version(), "numpy": np.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def data_range(frame: pd.DataFrame) -> dict:
    return {"from": local_date(float(frame["epoch"].min())).isoformat(),
            "to": local_date(float(frame["epoch"].max())).isoformat(), "rows": len(frame)}


@dataclass
class Outcome:
    model_type: str
    metrics: dict
    onnx_bytes: int = 0
    parity_gap: float = float("nan")
    published: registry.Entry | None = None
    refused: str = ""
    seconds: dict = field(default_factory=dict)


def train(frame: pd.DataFrame, store_uri: str | Store | None, model_types: list[str],
          holdout_days: int = 28, backtest_report: dict | None = None,
          data_name: str = "") -> list[Outcome]:
    """Holdout metrics, then a final fit on every row, export, parity gate, publish.
    `store_uri`: a URI or an opened Store; None publishes nothing (an evaluation run).
    A backtest report (velocast.train.backtest's JSON) of the same data, feature spec
    and model configuration puts its table and interval into the cards."""
    unknown = [m for m in model_types if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model type(s) {unknown}; choose from {sorted(MODELS)}")
    if frame.empty:
        raise ValueError("no usable rows to train on")
    store = store_uri if isinstance(store_uri, Store) else \
        open_store(store_uri) if store_uri else None
    fit_rows, holdout_rows = split_holdout(frame, holdout_days)
    if fit_rows.empty or holdout_rows.empty:
        raise ValueError(f"need more than {holdout_days} days of data for a {holdout_days}-day holdout")
    fit_rows, _, train_part, holdout = prepare_split(fit_rows, holdout_rows)
    say(f"holdout: {data_range(holdout_rows)['from']} to {data_range(holdout_rows)['to']} "
        f"({len(holdout_rows):,} rows); fitting on {len(fit_rows):,} earlier rows")

    all_rows = drop_outages(frame)
    final_table = fit_table(all_rows)
    final = prepare(all_rows, final_table)
    # Parity is checked on the holdout rows, featurized as the published model sees them.
    parity_rows = prepare(holdout_rows, final_table).matrix
    outcomes = []
    for step, model_type in enumerate(model_types, 1):
        spec = MODELS[model_type]
        prefix = f"[{step}/{len(model_types)}] {model_type}"
        started = time.perf_counter()
        say(f"{prefix}: fitting on {len(train_part.matrix):,} rows for holdout metrics")
        estimator = fit(spec, train_part)
        metrics = evaluate(spec, estimator, holdout)
        residuals = holdout.log_count - export.sklearn_output(estimator, holdout.matrix, spec.task) \
            if spec.kind.interval else None
        outcome = Outcome(model_type, metrics)
        outcome.seconds["holdout_fit"] = round(time.perf_counter() - started, 1)
        say(f"{prefix}: holdout " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        outcomes.append(outcome)
        if store is None:
            continue
        source = {**data_range(holdout_rows), "note": (
            f"last {holdout_days} days, scored by a model fitted on the rows before them; "
            "the published model was then refitted on all rows")}
        extra = calibration.card_fields(backtest_report, model_type, spec.task, data_name,
                                        calibration.fingerprint(spec, RECENCY_DAYS), residuals,
                                        data_range(holdout_rows))
        finalize(store, model_type, outcome, final, parity_rows, source, all_rows, prefix, extra)
    return outcomes


def finalize(store, model_type: str, outcome: Outcome, final: Prepared, parity_rows: np.ndarray,
             metrics_source: dict, all_rows: pd.DataFrame, prefix: str, extra_card=None) -> None:
    """Final fit on every row, then `publish_fitted`; fills `outcome`."""
    started = time.perf_counter()
    say(f"{prefix}: final fit on all {len(final.matrix):,} rows")
    estimator = fit(MODELS[model_type], final)
    outcome.seconds["final_fit"] = round(time.perf_counter() - started, 1)
    publish_fitted(store, model_type, outcome, estimator, final.table, parity_rows,
                   metrics_source, all_rows, prefix, extra_card)


def publish_fitted(store, model_type: str, outcome: Outcome, estimator, table: CounterTable,
                   parity_rows: np.ndarray, metrics_source: dict, fitted_rows: pd.DataFrame,
                   prefix: str, extra_card=None) -> None:
    """ONNX export, parity gate, publish the estimator fitted on `fitted_rows` with its
    counter table; fills `outcome` (published entry, or why it was refused)."""
    spec = MODELS[model_type]
    # roc_auc is NaN when the holdout holds one class only: not a publishable figure.
    metrics = {k: v for k, v in outcome.metrics.items() if np.isfinite(v)}
    onnx_bytes = export.to_onnx(estimator, spec.task)
    outcome.onnx_bytes = len(onnx_bytes)
    outcome.parity_gap = export.parity_gap(onnx_bytes, estimator, parity_rows, spec.task)
    if outcome.parity_gap > export.PARITY_TOLERANCE:
        outcome.refused = (f"ONNX output differs from scikit-learn by {outcome.parity_gap:.2e} "
                           f"(> {export.PARITY_TOLERANCE:g})")
    elif len(onnx_bytes) > MAX_ONNX_BYTES:
        outcome.refused = f"ONNX file is {len(onnx_bytes):,} bytes (> {MAX_ONNX_BYTES:,})"
    if outcome.refused:
        say(f"{prefix}: NOT published: {outcome.refused}")
        return
    card = {
        "task": spec.task,
        "model_type": model_type,
        "description": spec.description,
        "metrics": metrics,
        "metrics_source": metrics_source,
        "trained_from": data_range(fitted_rows)["from"],
        "trained_to": data_range(fitted_rows)["to"],
        "training_rows": len(fitted_rows),
        "sample_weight": f"exp(-age / {RECENCY_DAYS:g} days), age from the newest row",
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "target": tasks.get(spec.task).target + (
            "; an offset model learns it minus counter_recent, which its ONNX graph adds back"
            if spec.offset and not spec.kind.classifier else ""),
        "onnx": {"input": export.INPUT_NAME, "opset": export.TARGET_OPSET,
                 "parity_max_abs_diff": outcome.parity_gap},
        "counter_table": table.to_dict(),
        "libraries": library_versions(),
        "training_seconds": outcome.seconds,
    }
    for key, value in (extra_card or {}).items():   # mappings are merged, not replaced
        card[key] = {**card[key], **value} if isinstance(card.get(key), dict) else value
    outcome.published = registry.publish(store, onnx_bytes, card)
    say(f"{prefix}: published version {outcome.published.version} "
        f"({len(onnx_bytes) / 1e6:.2f} MB, parity gap {outcome.parity_gap:.1e})")


def summary_table(outcomes: list[Outcome]) -> str:
    names = ["rmse_log", "rmse", "mae", "r2", "f1_score", "accuracy", "precision", "recall", "roc_auc"]
    lines = [f"{'model':<10} " + " ".join(f"{n:>9}" for n in names) +
             f" {'onnx MB':>8} {'parity':>8}  status"]
    for o in outcomes:
        cells = " ".join(f"{o.metrics[n]:9.4f}" if n in o.metrics else f"{'-':>9}" for n in names)
        status = (f"published {o.published.version}" if o.published else
                  o.refused or "evaluated only")
        lines.append(f"{o.model_type:<10} {cells} {o.onnx_bytes / 1e6:8.2f} "
                     f"{o.parity_gap:8.1e}  {status}")
    return "\n".join(lines)
