"""One description per task: what a function predicts, how its models are chosen and
how a model's ONNX outputs become the response.

Training, the registry, the service, the models CLI, packaging, the local runner and
the cloud script all read TASKS; adding a function is one entry here, one
`functions/<name>/main.py` and one entry in Terraform's `functions` map (README,
"Adding a function").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Which way is better, for every metric any task selects models by.
METRIC_DIRECTIONS: dict[str, str] = {
    "rmse_log": "min", "rmse": "min", "mae": "min", "r2": "max",
    "f1_score": "max", "accuracy": "max", "precision": "max", "recall": "max", "roc_auc": "max",
}


def better(metric: str, value: float, other: float) -> bool:
    """Whether `value` of `metric` is strictly better than `other`."""
    return value < other if METRIC_DIRECTIONS[metric] == "min" else value > other


def classifier_probability(outputs) -> np.ndarray:
    """P(busy) from a classifier's ONNX outputs: exported with zipmap disabled, they are
    (label, probabilities[:, 2])."""
    return np.asarray(outputs[1])[:, 1]


def regressor_log_count(outputs) -> np.ndarray:
    """log1p(count) from a regressor's ONNX outputs, one value per row."""
    return np.asarray(outputs[0]).reshape(-1)


def finite(values) -> list[float]:
    """JSON has no NaN: a non-finite model output is a bug, surfaced as such."""
    # One numpy pass: converting element by element was ~10 % of a 5,000-row batch.
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(out).all():
        raise ValueError("model produced a non-finite output")
    return out.tolist()


LABELS = ("faible", "forte")


def _classify_response(outputs, model, epoch_seconds=None) -> dict:
    probability_busy = classifier_probability(outputs)
    predictions = (probability_busy >= 0.5).astype(int).tolist()
    return {"predictions": predictions,
            "label": [LABELS[p] for p in predictions],
            "probabilities": [round(p, 4) for p in finite(probability_busy)]}


def _regress_response(outputs, model, epoch_seconds=None) -> dict:
    # Models predict log1p(count); counts are never negative.
    log_counts = regressor_log_count(outputs)
    counts = np.clip(np.expm1(log_counts), 0.0, None)
    response = {"predictions": [round(c, 1) for c in finite(counts)]}
    interval = getattr(model, "interval", None)
    if interval is not None:   # the card's 80 % interval (velocast.core.intervals), per horizon
        lower, upper = interval.bounds(log_counts, epoch_seconds)
        response.update(lower=[round(c, 1) for c in finite(lower)],
                        upper=[round(c, 1) for c in finite(upper)],
                        interval_level=interval.level)
    return response


@dataclass(frozen=True)
class OnnxOutput:
    """One output a task's ONNX models must have, in order (skl2onnx's names)."""
    name: str
    columns: int | None = None    # None: one value per row, shape (rows,) or (rows, 1)


def _regression_replies(output: str, response: dict):
    """i -> the i-th reply of another caller's body (BigQuery, Vertex AI), from the
    function's own response; ValueError if the response cannot give that output."""
    counts = response["predictions"]
    if output == "count":
        return counts.__getitem__
    if "lower" not in response or "upper" not in response:
        raise ValueError("output 'interval': the served model has no prediction intervals "
                         "(lower/upper)")
    lower, upper = response["lower"], response["upper"]
    return lambda i: {"count": counts[i], "lower": lower[i], "upper": upper[i]}


def _classification_replies(output: str, response: dict):
    probability, label = response["probabilities"], response["label"]
    if output == "probability":
        return probability.__getitem__
    if output == "busy":
        return lambda i: bool(response["predictions"][i])
    if output == "label":
        return label.__getitem__
    return lambda i: {"label": label[i], "probability": probability[i]}


@dataclass(frozen=True)
class Kind:
    """What a task's models are, and so how they are trained, checked, scored and
    answered: every difference between a regression and a classification task is a
    field here, so no code elsewhere asks a task for its name."""
    name: str
    classifier: bool                         # learns `busy`, exported with probabilities
    model_output: Callable[[list], np.ndarray]   # ONNX outputs -> the scored value per row
    # (ONNX outputs, loaded model, records' UTC instants or None) -> response fields
    response: Callable[[list, object, object], dict]
    # What a model must output to be served (velocast.catalog.model_checks): the outputs' layout
    # and the range of model_output's values (None: any finite value).
    onnx_outputs: tuple[OnnxOutput, ...]
    output_range: tuple[float, float] | None
    live_metrics: tuple[str, ...]            # live accuracy and `make report` track these
    metric_titles: dict = field(default_factory=dict)   # report panel titles
    interval: bool = False                   # answers an 80 % interval (velocast.core.intervals)
    # Other callers' bodies (velocast.serving.protocols): reply name -> BigQuery SQL type, the
    # default for BigQuery and for Vertex AI, and (output, response) -> i -> reply.
    outputs: dict = field(default_factory=dict)
    bigquery_output: str = ""
    vertex_output: str = ""
    replies: Callable[[str, dict], Callable] | None = None


REGRESSION = Kind(
    name="regression", classifier=False, model_output=regressor_log_count,
    response=_regress_response, onnx_outputs=(OnnxOutput("variable"),), output_range=None,
    live_metrics=("rmse_log", "mae"), interval=True,
    metric_titles={"rmse_log": "RMSE of log1p(count), lower is better",
                   "mae": "MAE (bikes per hour), lower is better"},
    outputs={"count": "FLOAT64", "interval": "JSON"}, bigquery_output="count",
    vertex_output="count", replies=_regression_replies)
CLASSIFICATION = Kind(
    name="classification", classifier=True, model_output=classifier_probability,
    response=_classify_response, onnx_outputs=(OnnxOutput("label"), OnnxOutput("probabilities", 2)),
    output_range=(0.0, 1.0), live_metrics=("f1_score",),
    metric_titles={"f1_score": "F1 of 'forte' (busy), higher is better"},
    # BigQuery defaults to the probability: a FLOAT64 sorts, averages and thresholds in
    # SQL without JSON_VALUE; "busy" gives the function's own 0.5 decision as a BOOL.
    # Vertex clients read JSON, not SQL: {"label", "probability"} there.
    outputs={"probability": "FLOAT64", "busy": "BOOL", "label": "STRING", "object": "JSON"},
    bigquery_output="probability", vertex_output="object", replies=_classification_replies)


@dataclass(frozen=True)
class Task:
    name: str
    target: str                              # what the models predict, for cards and docs
    metrics: tuple[str, ...]                 # selectable metrics; the first is the default
    model_types: tuple[str, ...]             # what training publishes for this task
    kind: Kind                               # how its models are trained, checked, answered
    local_port: int                          # make serve / make demo
    # The old system's model names, still sent by its clients: old name -> model type.
    aliases: dict[str, str] = field(default_factory=dict)
    # The answer's fields, when they are not the kind's: (ONNX outputs, model) -> dict.
    respond: Callable[[list, object], dict] | None = None

    @property
    def default_metric(self) -> str:
        return self.metrics[0]

    @property
    def model_output(self) -> Callable[[list], np.ndarray]:
        return self.kind.model_output

    def answer(self, outputs, model, epoch_seconds=None) -> dict:
        """The response fields for the ONNX outputs; the records' instants place each
        record in its interval's horizon bucket (velocast.core.intervals)."""
        if self.respond is not None:
            return self.respond(outputs, model)
        return self.kind.response(outputs, model, epoch_seconds)

    @property
    def onnx_outputs(self) -> tuple[OnnxOutput, ...]:
        return self.kind.onnx_outputs

    @property
    def output_range(self) -> tuple[float, float] | None:
        return self.kind.output_range

    def model_type(self, requested: str | None) -> str | None:
        return self.aliases.get(requested, requested) if requested else requested


TASKS: dict[str, Task] = {
    "classify": Task(
        name="classify",
        target="1 if the hourly count is above the counter's mean count in the training rows, else 0",
        metrics=("f1_score", "accuracy", "precision", "recall", "roc_auc"),
        model_types=("affluence",),
        kind=CLASSIFICATION,
        local_port=8080,
        # The old Streamlit front's "RF Classifier (Affluence)" sends rf_class.
        aliases={"rf_class": "affluence"},
    ),
    "regress": Task(
        name="regress",
        target="log1p(hourly count)",
        metrics=("rmse_log", "rmse", "mae", "r2"),
        model_types=("gbdt", "rf", "nn"),
        kind=REGRESSION,
        local_port=8000,
    ),
}
TASK_NAMES = tuple(TASKS)
MODEL_TASK = {model_type: task.name for task in TASKS.values() for model_type in task.model_types}


def of_model(model_type: str) -> Task:
    """The task a model type belongs to (its `model_types`)."""
    return get(MODEL_TASK[model_type])


def get(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}") from None
