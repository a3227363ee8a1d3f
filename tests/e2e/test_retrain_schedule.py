"""Each model type retrains on its own schedule of new whole days (D3: once classify
was promoted, regress got no retrain until another day arrived, and a day of 1,144 new
rows was reported as "nothing to compare")."""

from __future__ import annotations

import datetime as dt

import pytest
from velocast.core.local_time import PARIS
from velocast.catalog.store import LocalStore
from velocast.train import counts
from velocast.train.retrain import retrain

from tests.count_rows import rows_of
from tests.fake_portal import load_rows

pytestmark = [pytest.mark.real_data]


def test_a_type_not_retrained_yesterday_is_retrained_today_while_the_other_waits(shared_data, tmp_path):
    rows = load_rows(shared_data / "paris-bike-counts-2020-09-01_2021-08-09.csv.gz", counters=4,
                     first_day="2021-06-10", last_day="2021-07-09")
    store = LocalStore(tmp_path / "store")

    def add_until(day: str) -> None:
        counts.commit(store, rows_of([r for r in rows if dt.datetime.fromtimestamp(
            r["_epoch"], PARIS).date().isoformat() <= day]), "test", {})

    add_until("2021-07-07")
    first = retrain(store.root, None, ["gbdt", "affluence"], window_days=30)
    assert len(first.promotions) == 2, first.text()
    add_until("2021-07-08")
    only_classify = retrain(store.root, None, ["affluence"], window_days=30)
    assert [d.model_type for d in only_classify.decisions if d.candidate] == ["affluence"]
    # No new day since: affluence has seen everything it could, gbdt has not.
    both = retrain(store.root, None, ["gbdt", "affluence"], window_days=30)
    by_type = {d.model_type: d for d in both.decisions}
    assert by_type["gbdt"].candidate and by_type["gbdt"].champion is not None, both.text()
    assert not by_type["affluence"].candidate and "nothing new" in by_type["affluence"].reason
