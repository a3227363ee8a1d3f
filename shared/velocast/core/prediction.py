"""The prediction core: records in, an `Answer` out. No HTTP here: the old {"records"}
body (velocast.serving.service), BigQuery calls and Vertex AI instances (velocast.serving.protocols)
are thin adapters that parse their body into `Records`, call `Predictor.predict`, and
shape the answer; errors raised here are rendered by the edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from velocast.core import advisories, tasks
from velocast.core.features import COORDINATES, COUNTER, MAX_NEIGHBOUR_KM, Records, build_matrix


@dataclass
class Answer:
    fields: dict                  # the Task's response fields, one value per scored record
    # velocast.catalog.LoadedModel: run(matrix), describe(metric), table, interval (core
    # sits below the catalog, so it names the model by what it uses, not by import).
    model: object
    metric: str                   # the metric the model was chosen by
    warnings: list = field(default_factory=list)     # {"record", "field", "message"}
    rows: np.ndarray | None = None   # the records scored, when unscorable ones were skipped

    def describe_model(self) -> dict:
        return self.model.describe(self.metric)


def scorable(records: Records, table) -> np.ndarray:
    """Which records `build_matrix` can take: a known counter, or an unknown one whose
    coordinates lie within MAX_NEIGHBOUR_KM of a known counter (the same rules: it
    raises for the first record that is not)."""
    ok = np.ones(len(records), dtype=bool)
    known: dict[str, bool] = {}
    near: dict[tuple, bool] = {}
    for i, name in enumerate(records.names):
        is_known = known.get(name)
        if is_known is None:
            is_known = known[name] = table.index_of(name) is not None
        if is_known:
            continue
        lat, lon = float(records.latitude[i]), float(records.longitude[i])
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            ok[i] = False
            continue
        if (lat, lon) not in near:
            near[(lat, lon)] = table.nearest_km(lat, lon) <= MAX_NEIGHBOUR_KM
        ok[i] = near[(lat, lon)]
    return ok


class Predictor:
    """One task's predictions from the models its cache serves."""

    def __init__(self, task: tasks.Task, cache):
        self.task, self.cache = task, cache

    def predict(self, records: Records, model_type: str | None = None, metric: str | None = None,
                skip_unscorable: bool = False) -> Answer:
        """The served model's answer for `records`. With `skip_unscorable`, records no
        model can score are left out (`Answer.rows` says which were scored) instead of
        failing the batch."""
        model = self.cache.get(model_type, metric)
        metric = metric or self.task.default_metric
        rows = None
        if skip_unscorable:
            rows = np.flatnonzero(scorable(records, model.table))
            records = Records([records.names[i] for i in rows.tolist()], records.epoch_seconds[rows],
                              records.latitude[rows], records.longitude[rows])
        if len(records) == 0:
            return Answer({}, model, metric, [], rows)
        batch = build_matrix(records, model.table)
        fields = self.task.answer(model.run(batch.matrix), model, records.epoch_seconds)
        warnings = records.warnings + advisories.for_batch(
            records.names, records.epoch_seconds, model.table) + [
            {"record": row, "field": COUNTER,
             "message": f"counter {records.names[row]!r} was not seen in training; "
                        "predicted from the nearest known counters"}
            for row in batch.unknown_counters] + [
            {"record": row, "field": COORDINATES,
             "message": f"counter {records.names[row]!r} is known elsewhere; predicted at its "
                        "known place, not at the coordinates given"}
            for row in batch.moved_counters]
        return Answer(fields, model, metric, sorted(warnings, key=lambda w: w["record"]), rows)
