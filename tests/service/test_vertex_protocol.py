"""Vertex AI prediction bodies on both functions, over real HTTP on loopback:
{"instances": [record, ...], "parameters": {...}} -> {"predictions": [...]}, records
in the old body's forms, answers equal to the old body's."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import (  # noqa: E402
    EXPORT_RECORD, OLD_BODIES, OLD_RECORD, SNAKE_RECORD, error_of)
pytest.register_assert_rewrite("tests.protocol_servers")
from tests.protocol_servers import CLIENT_KEY, old_answer, post  # noqa: E402

pytest_plugins = ["tests.protocol_servers"]

KEY = {"X-API-Key": CLIENT_KEY}
RECORDS = [OLD_RECORD, SNAKE_RECORD, EXPORT_RECORD]



def test_regress_predictions_equal_the_old_bodies(regress):
    r = post(regress, {"instances": RECORDS}, headers=KEY)
    assert r.status_code == 200, r.text
    old = old_answer(regress, RECORDS)
    assert r.json() == {"predictions": old["predictions"],
                        "modelVersionId": old["model"]["version"]}


def test_parameters_choose_model_and_metric(regress):
    old_body = OLD_BODIES["regress"]  # model_type nn, metric r2
    r = post(regress, {"instances": old_body["records"],
                       "parameters": {"model_type": "nn", "metric": "r2"}}, headers=KEY)
    assert r.status_code == 200, r.text
    old = old_answer(regress, old_body["records"], model_type="nn", metric="r2")
    assert r.json()["predictions"] == old["predictions"]
    assert r.json()["modelVersionId"] == old["model"]["version"]


def test_classify_answers_label_and_probability_per_instance(classify):
    r = post(classify, {"instances": RECORDS, "parameters": {}}, headers=KEY)
    assert r.status_code == 200, r.text
    old = old_answer(classify, RECORDS)
    assert r.json()["predictions"] == [
        {"label": label, "probability": p} for label, p in zip(old["label"], old["probabilities"])]


@pytest.mark.parametrize("output, key", [("probability", "probabilities"), ("label", "label")])
def test_classify_output_parameter(classify, output, key):
    r = post(classify, {"instances": RECORDS, "parameters": {"output": output}}, headers=KEY)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == old_answer(classify, RECORDS)[key]


def test_old_system_bodies_keep_their_exact_answers(regress, classify):
    # The same body twice, and through Vertex: the old shape is untouched.
    for server, name in ((regress, "regress"), (classify, "classify")):
        first = post(server, OLD_BODIES[name], headers=KEY)
        second = post(server, OLD_BODIES[name], headers=KEY)
        assert first.status_code == 200 and first.content == second.content
        body = first.json()
        expected = {"predictions", "model", "warnings"}
        if name == "classify":
            expected |= {"label", "probabilities"}
        else:   # the 80 % interval is added; predictions keep their old meaning
            expected |= {"lower", "upper", "interval_level"}
        assert set(body) == expected
        vertex = post(server, {"instances": OLD_BODIES[name]["records"],
                               "parameters": {k: v for k, v in OLD_BODIES[name].items()
                                              if k != "records"}}, headers=KEY).json()
        if name == "regress":
            assert vertex["predictions"] == body["predictions"]
        else:
            assert vertex["predictions"] == [{"label": body["label"][0],
                                              "probability": body["probabilities"][0]}]


# ------------------------------------------------------------------------- errors

def test_422_names_the_bad_instance_and_field_as_the_old_body_does(regress):
    bad = [SNAKE_RECORD, {**SNAKE_RECORD, "date_et_heure_de_comptage": "yesterday"}]
    r = post(regress, {"instances": bad}, headers=KEY)
    old = post(regress, {"records": bad}, headers=KEY)
    assert r.status_code == old.status_code == 422
    assert error_of(r) == error_of(old)
    assert error_of(r)["details"][0]["record"] == 1


def test_422_unknown_counter_without_coordinates(classify):
    r = post(classify, {"instances": [{"nom_du_compteur": "Nowhere",
                                       "date_et_heure_de_comptage": "2025-05-20T08:00:00+02:00"}]},
             headers=KEY)
    assert r.status_code == 422
    assert error_of(r)["details"][0]["record"] == 0


@pytest.mark.parametrize("body, words", [
    ({"instances": {"0": SNAKE_RECORD}}, "must be a non-empty list"),
    ({"instances": []}, "non-empty list"),
    ({"instances": [SNAKE_RECORD], "parameters": ["nn"]}, "'parameters' must be a JSON object"),
    ({"instances": [SNAKE_RECORD], "parameters": {"model_type": "xgboost"}}, "xgboost"),
    ({"instances": [SNAKE_RECORD], "parameters": {"output": "busy"}}, "not one of"),
])
def test_422_bad_instances_or_parameters(regress, body, words):
    r = post(regress, body, headers=KEY)
    assert r.status_code == 422, r.text
    assert words in error_of(r)["message"]


def test_the_key_goes_in_a_header_as_for_the_old_body(regress):
    r = post(regress, {"instances": [SNAKE_RECORD], "parameters": {"api_key": CLIENT_KEY}})
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthenticated"


def test_interval_output_is_the_count_and_its_80_percent_bounds(regress):
    r = post(regress, {"instances": [SNAKE_RECORD], "parameters": {"output": "interval"}},
             headers=KEY)
    assert r.status_code == 200, r.text
    old = post(regress, {"records": [SNAKE_RECORD]}, headers=KEY).json()
    assert r.json()["predictions"] == [{"count": old["predictions"][0], "lower": old["lower"][0],
                                        "upper": old["upper"][0]}]
