"""80 % intervals per horizon: a record's bounds use the offsets of its distance from
the model's training end (day 1, days 2-7, days 8-31 after the card's trained_to)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from velocast.core import intervals, tasks
from velocast.core.local_time import PARIS

CARD = {
    "trained_to": "2021-08-09",
    "interval": {"level": 0.8, "lower_log": -0.5, "upper_log": 0.5, "horizons": [
        {"name": "day 1", "last_day": 1, "lower_log": -0.1, "upper_log": 0.2},
        {"name": "days 2-7", "last_day": 7, "lower_log": -0.3, "upper_log": 0.4},
        {"name": "days 8-31", "last_day": 31, "lower_log": -0.6, "upper_log": 0.7}]},
}


def at(day: dt.date, hour: int) -> float:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=PARIS).timestamp()


def test_each_record_gets_the_offsets_of_its_horizon_in_paris_days():
    interval = intervals.from_card(CARD)
    epochs = [at(dt.date(2021, 8, 9), 23),     # the training's last day: day 0 -> day 1's pair
              at(dt.date(2021, 8, 10), 0),     # day 1 from local midnight
              at(dt.date(2021, 8, 10), 23),
              at(dt.date(2021, 8, 11), 0),     # day 2
              at(dt.date(2021, 8, 16), 23),    # day 7
              at(dt.date(2021, 8, 17), 0),     # day 8
              at(dt.date(2021, 12, 1), 12)]    # beyond day 31: the last bucket's pair
    low, high = interval.offsets(np.array(epochs))
    assert low.tolist() == [-0.1, -0.1, -0.1, -0.3, -0.3, -0.6, -0.6]
    assert high.tolist() == [0.2, 0.2, 0.2, 0.4, 0.4, 0.7, 0.7]


def test_the_regress_response_applies_them_around_each_prediction():
    class Model:
        interval = intervals.from_card(CARD)

    outputs = [np.array([[3.0], [3.0]], np.float32)]
    epochs = np.array([at(dt.date(2021, 8, 10), 8), at(dt.date(2021, 9, 6), 8)])
    response = tasks.TASKS["regress"].answer(outputs, Model(), epochs)
    assert response["lower"] == [round(float(np.expm1(3.0 - 0.1)), 1),
                                 round(float(np.expm1(3.0 - 0.6)), 1)]
    assert response["upper"] == [round(float(np.expm1(3.0 + 0.2)), 1),
                                 round(float(np.expm1(3.0 + 0.7)), 1)]
    # Without the records' instants (an older caller), the pooled pair.
    pooled = tasks.TASKS["regress"].answer(outputs, Model())
    assert pooled["lower"] == [round(float(np.expm1(3.0 - 0.5)), 1)] * 2


@pytest.mark.parametrize("change", [
    {"horizons": "wide"},
    {"horizons": CARD["interval"]["horizons"][:2]},
    {"horizons": [{**h, "last_day": 2 * h["last_day"]} for h in CARD["interval"]["horizons"]]},
    {"horizons": [{**h, "lower_log": 0.3} for h in CARD["interval"]["horizons"]]},
])
def test_malformed_horizons_refuse_the_model(change):
    with pytest.raises(ValueError, match="interval"):
        intervals.from_card({**CARD, "interval": {**CARD["interval"], **change}})


def test_horizons_need_the_cards_training_end():
    with pytest.raises(ValueError, match="trained_to"):
        intervals.from_card({"interval": CARD["interval"]})
