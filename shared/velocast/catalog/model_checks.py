"""What a model must prove before a function serves it.

The registry checks that the bytes and the card are the ones published; this module
checks that they can serve: the ONNX input and outputs have the layout the features
and the task expect, and a canary batch (every day type, a public holiday, an unknown
counter placed near known ones, several hours of the day, every known counter) runs
through the real feature and response code with finite outputs of the right shape.
A model that loads but fails here is refused and the last good one keeps serving:
without these checks an ONNX file of another input width, a regressor published under
classify, or a card with a wrongly shaped profile loaded fine and then answered 500 on
every request (or on Sundays only).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from velocast.core import tasks
from velocast.core.features import N_FEATURES, ONNX_INPUT_NAME, CounterTable, Records, build_matrix
from velocast.core.local_time import PARIS

__all__ = ["ModelCheckError", "canary_records", "check"]

# Local days of each kind (2025): a Tuesday, a Saturday, a Sunday, and Labour Day (a
# Thursday, so a public holiday on a weekday: day type 2 through the holiday rule).
CANARY_DAYS = (dt.date(2025, 5, 20), dt.date(2025, 5, 17), dt.date(2025, 5, 18),
               dt.date(2025, 5, 1))
CANARY_HOURS = (0, 8, 13, 18, 23)
# The unknown counter sits this far (degrees, about 100 m) from the first known one.
UNKNOWN_OFFSET_DEGREES = 0.001
UNKNOWN_NAME = "velocast canary: a counter no model has seen"


class ModelCheckError(ValueError):
    """A model that loads but cannot serve; the message says why."""


def check(task_name: str, session, table: CounterTable) -> None:
    """Raise ModelCheckError unless `session` (an onnxruntime InferenceSession) has
    the task's layout and answers the canary batch built from `table`."""
    task = tasks.get(task_name)
    _check_signature(task, session)
    _check_canary(task, session, table)


def _check_signature(task: tasks.Task, session) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelCheckError(f"ONNX model has {len(inputs)} inputs, expected one "
                              f"({ONNX_INPUT_NAME!r})")
    given = inputs[0]
    if given.name != ONNX_INPUT_NAME:
        raise ModelCheckError(f"ONNX input is {given.name!r}, expected {ONNX_INPUT_NAME!r}")
    if given.type != "tensor(float)":
        raise ModelCheckError(f"ONNX input is {given.type}, expected tensor(float)")
    if len(given.shape) != 2 or given.shape[1] != N_FEATURES:
        raise ModelCheckError(f"ONNX input has shape {given.shape}, expected "
                              f"[rows, {N_FEATURES}] (the feature spec's width)")
    names = [o.name for o in session.get_outputs()]
    expected = [o.name for o in task.onnx_outputs]
    if names != expected:
        raise ModelCheckError(f"ONNX outputs are {names}, {task.name} models output {expected}")


def canary_records(table: CounterTable) -> Records:
    """The first known counter and an unknown one placed next to it at every canary day
    and hour; every known counter on every canary day, at one hour each. With 112
    counters that is 488 rows, 12 ms of a cold start with the gbdt model; the full
    grid for every counter (2,260 rows) took 31 ms."""
    def instant(day: dt.date, hour: int) -> float:
        return dt.datetime(day.year, day.month, day.day, hour, tzinfo=PARIS).timestamp()

    grid = [instant(d, h) for d in CANARY_DAYS for h in CANARY_HOURS]
    names = [table.names[0]] * len(grid) + [UNKNOWN_NAME] * len(grid)
    epoch = grid + grid
    for i, name in enumerate(table.names):
        hour = CANARY_HOURS[i % len(CANARY_HOURS)]
        names += [name] * len(CANARY_DAYS)
        epoch += [instant(d, hour) for d in CANARY_DAYS]
    unknown = np.array([n == UNKNOWN_NAME for n in names])
    latitude = np.where(unknown, table.latitude[0] + UNKNOWN_OFFSET_DEGREES, np.nan)
    longitude = np.where(unknown, table.longitude[0] + UNKNOWN_OFFSET_DEGREES, np.nan)
    return Records(names=names, epoch_seconds=np.array(epoch), latitude=latitude,
                   longitude=longitude)


def _check_canary(task: tasks.Task, session, table: CounterTable) -> None:
    try:
        batch = build_matrix(canary_records(table), table)
    except (ValueError, IndexError) as exc:
        raise ModelCheckError(f"canary batch: the card's counter table cannot build "
                              f"features: {exc}") from exc
    rows = len(batch.matrix)
    if not np.isfinite(batch.matrix).all():
        raise ModelCheckError("canary batch: the card's counter table gives non-finite features")
    try:
        outputs = session.run(None, {ONNX_INPUT_NAME: batch.matrix})
    except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own types)
        raise ModelCheckError(f"canary batch: the model cannot run: {exc}") from exc
    for spec, output in zip(task.onnx_outputs, outputs):
        values = np.asarray(output)
        shapes = [(rows,), (rows, 1)] if spec.columns is None else [(rows, spec.columns)]
        if values.shape not in shapes:
            raise ModelCheckError(f"canary batch: output {spec.name!r} has shape {values.shape} "
                                  f"for {rows} rows, expected {' or '.join(map(str, shapes))}")
        if values.dtype.kind not in "biuf" or not np.isfinite(values).all():
            raise ModelCheckError(f"canary batch: output {spec.name!r} is not finite numbers")
    scored = np.asarray(task.model_output(outputs))
    if task.output_range is not None:
        low, high = task.output_range
        if scored.min() < low or scored.max() > high:
            raise ModelCheckError(f"canary batch: {task.name} output spans [{scored.min():g}, "
                                  f"{scored.max():g}], outside [{low:g}, {high:g}]")
    try:
        # The response code itself (the regressor's expm1 can overflow to infinity).
        with np.errstate(over="ignore"):
            task.answer(outputs, None)
    except ValueError as exc:
        raise ModelCheckError(f"canary batch: {exc}") from exc
