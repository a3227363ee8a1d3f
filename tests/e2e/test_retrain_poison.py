"""A week of counts x1000 that got past ingest reaches the retrain day after day: the
served answers on the reference panel must stay near the clean ones (N1, D1).

Rows go into the store with `counts.commit`, ingest's own writer, so that this tests
the retrain's defences alone (ingest's checks are tests/e2e/test_ingest*.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from velocast import catalog
from velocast.core.features import build_matrix
from velocast.core.local_time import PARIS
from velocast.catalog.store import LocalStore
from velocast.train import counts, gate
from velocast.train.retrain import retrain

from tests.count_rows import rows_of
from tests.fake_portal import load_rows

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

FIRST, POISON_FROM, LAST = "2021-05-20", dt.date(2021, 7, 3), dt.date(2021, 7, 12)


def served_day_totals(store, after_day: str) -> np.ndarray:
    """The served gbdt's forecast of each counter's daily total over the panel week."""
    entry = catalog.Snapshot.read(store, "regress").served_by_type()["gbdt"]
    model = catalog.load(store, entry)
    panel = gate.panel(model.table, after_day)
    hourly = np.expm1(model.output(build_matrix(panel, model.table).matrix))
    return hourly.reshape(len(model.table.names), gate.PANEL_DAYS, 24).sum(axis=2)


def test_a_poisoned_week_keeps_the_served_forecasts_within_2x_of_the_clean_loops(shared_data, tmp_path):
    portal_rows = load_rows(shared_data / "paris-bike-counts-2020-09-01_2021-08-09.csv.gz",
                            counters=6, first_day=FIRST, last_day=LAST.isoformat())
    by_day: dict = {}
    for row in portal_rows:
        by_day.setdefault(dt.datetime.fromtimestamp(row["_epoch"], PARIS).date(), []).append(row)
    days = sorted(by_day)
    stores = {name: LocalStore(tmp_path / name) for name in ("clean", "poisoned")}
    clean_until = POISON_FROM - dt.timedelta(days=1)
    for store in stores.values():
        counts.commit(store, rows_of([r for d in days if d <= clean_until for r in by_day[d]]), "t", {})
        assert retrain(store.root, None, ["gbdt"], window_days=40).promotions
    lines, worst = [], 1.0
    for day in [d for d in days if d >= POISON_FROM]:
        for name, store in stores.items():
            counts.commit(store, rows_of(by_day[day], POISON_FROM if name == "poisoned" else None),
                          "t", {})
            report = retrain(store.root, None, ["gbdt"], window_days=40)
            lines += [f"{day} {name}: {d.line()}" for d in report.decisions]
        ratio = served_day_totals(stores["poisoned"], LAST.isoformat()) / \
            served_day_totals(stores["clean"], LAST.isoformat())
        worst = max(worst, float(ratio.max()), float(1 / ratio.min()))
        assert worst <= 2.0, "\n".join(lines)
    assert any("REFUSED by the reference panel" in line for line in lines), "\n".join(lines)
