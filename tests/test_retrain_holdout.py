"""The retrain's comparison days: never days a served model was trained on."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pandas as pd

from velocast.features import PARIS
from velocast.train.retrain import unseen_holdout_days


def frame_to(day: dt.date, days: int = 20) -> pd.DataFrame:
    epochs = [dt.datetime.combine(day - dt.timedelta(days=i), dt.time(12), tzinfo=PARIS).timestamp()
              for i in range(days)]
    return pd.DataFrame({"epoch": epochs, "counter": "c", "count": 1.0})


def champion(trained_to: str):
    return SimpleNamespace(entry=SimpleNamespace(trained_to=trained_to))


def test_first_retrain_uses_the_full_holdout():
    assert unseen_holdout_days(frame_to(dt.date(2021, 7, 20)), {}, 7) == 7


def test_daily_retrain_compares_on_the_newest_day_only():
    champions = {("regress", "gbdt"): champion("2021-07-19")}
    assert unseen_holdout_days(frame_to(dt.date(2021, 7, 20)), champions, 7) == 1


def test_the_newest_champion_bounds_the_days_for_every_type():
    champions = {("regress", "gbdt"): champion("2021-07-10"), ("regress", "rf"): champion("2021-07-17")}
    assert unseen_holdout_days(frame_to(dt.date(2021, 7, 20)), champions, 7) == 3


def test_nothing_new_means_nothing_to_compare():
    champions = {("classify", "affluence"): champion("2021-07-20")}
    assert unseen_holdout_days(frame_to(dt.date(2021, 7, 20)), champions, 7) == 0
