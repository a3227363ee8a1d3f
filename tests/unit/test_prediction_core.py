"""The prediction core (velocast.core.prediction) without any transport: records in, an
Answer out; the three bodies are adapters over it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from velocast.core import tasks
from velocast.core.features import Records
from velocast.serving.model_cache import ModelCache
from velocast.core.prediction import Predictor

KNOWN = "Totem 73 boulevard de Sébastopol S-N"
EPOCH = 1747720800  # 2025-05-20 08:00 Paris


def predictor(store, task="regress") -> Predictor:
    return Predictor(tasks.get(task), ModelCache(str(store), task))


def records(names, lats=None, lons=None) -> Records:
    n = len(names)
    return Records(list(names), np.full(n, EPOCH, dtype=np.int64),
                   np.array(lats if lats is not None else [np.nan] * n, dtype=np.float64),
                   np.array(lons if lons is not None else [np.nan] * n, dtype=np.float64))


def test_a_known_counter_is_answered_with_the_tasks_fields_and_the_model(trained_store):
    answer = predictor(trained_store).predict(records([KNOWN, KNOWN]))
    assert len(answer.fields["predictions"]) == 2 and answer.fields["predictions"][0] > 0
    assert answer.metric == "rmse_log" and answer.describe_model()["task"] == "regress"


def test_the_core_imports_no_web_framework():
    loaded = subprocess.run([sys.executable, "-c", "import sys, velocast.core.prediction; "
                             "print(sorted(m for m in ('flask', 'werkzeug', 'functions_framework') "
                             "if m in sys.modules))"], capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_unscorable_records_are_skipped_only_when_asked(trained_store):
    batch = records([KNOWN, "nowhere counter", KNOWN], [np.nan, np.nan, np.nan], [np.nan] * 3)
    answer = predictor(trained_store, "classify").predict(batch, skip_unscorable=True)
    assert answer.rows.tolist() == [0, 2] and len(answer.fields["predictions"]) == 2
    with pytest.raises(ValueError) as failed:   # RecordError: the edge renders it as a 422
        predictor(trained_store, "classify").predict(batch)
    assert getattr(failed.value, "row", None) == 1


def test_an_unknown_counter_is_predicted_from_coordinates_with_a_warning(trained_store):
    answer = predictor(trained_store).predict(records(["a new counter"], [48.8637], [2.3510]))
    assert len(answer.fields["predictions"]) == 1
    assert [w["record"] for w in answer.warnings] == [0]
