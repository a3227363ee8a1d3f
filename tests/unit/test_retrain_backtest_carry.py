"""What a daily retrain carries from the served champion's card into its refit's card:
the backtest section, which the catalog ranks model types by, only when the refit is
configured as the backtested model was (issue 22: after the classifier became a blend
of two, a refit of the blend must not wear the single classifier's figures)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from velocast.train import calibration, pipeline
from velocast.train.retrain import carried_backtest

SPEC = pipeline.MODELS["affluence"]


def champion_with(section: dict | None):
    """A served model as the retrain sees it: its card and its registry entry."""
    return SimpleNamespace(card={} if section is None else {"backtest": section},
                           entry=SimpleNamespace(version="20210709T000000Z-abc123"))


def fingerprint(spec) -> str:
    return calibration.fingerprint(spec, pipeline.RECENCY_DAYS)


def test_a_refit_of_the_backtested_configuration_carries_the_section_and_says_from_where():
    section = {"mean_sd": {"affluence": {"f1_score": [0.81, 0.07]}}, "fingerprint": fingerprint(SPEC)}
    carried = carried_backtest(champion_with(section), fingerprint(SPEC))
    assert carried == {"backtest": {**section, "carried_over_from": "20210709T000000Z-abc123"}}


def test_a_refit_of_another_configuration_carries_nothing():
    single = dataclasses.replace(SPEC, blend=((),))
    assert fingerprint(single) != fingerprint(SPEC)
    section = {"mean_sd": {"affluence": {"f1_score": [0.76, 0.17]}}, "fingerprint": fingerprint(single)}
    assert carried_backtest(champion_with(section), fingerprint(SPEC)) == {}


def test_a_section_that_does_not_say_its_configuration_is_not_carried():
    section = {"mean_sd": {"affluence": {"f1_score": [0.76, 0.17]}}}
    assert carried_backtest(champion_with(section), fingerprint(SPEC)) == {}


def test_no_champion_or_no_section_carries_nothing():
    assert carried_backtest(None, fingerprint(SPEC)) == {}
    assert carried_backtest(champion_with(None), fingerprint(SPEC)) == {}

