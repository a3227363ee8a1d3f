"""BigQuery remote-function calls on both functions, over real HTTP on loopback.

Bodies are shaped as Google documents them (requestId, caller, sessionUser,
userDefinedContext, calls); arguments as BigQuery encodes them (TO_JSON_STRING:
TIMESTAMP as "...Z", FLOAT64 as a number or "NaN"/"Infinity", NULL as null).
"""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import KNOWN_COUNTER, OLD_RECORD  # noqa: E402
pytest.register_assert_rewrite("tests.protocol_servers")
from tests.protocol_servers import CLIENT_KEY, MAX_RECORDS, old_answer, post, running  # noqa: E402

pytest_plugins = ["tests.protocol_servers"]

KNOWN = [KNOWN_COUNTER, "2025-05-20T06:00:00Z", 48.86377, 2.35096]
# OLD_RECORD's counter is not in the synthetic sample: scored from its coordinates.
UNKNOWN = ["35 boulevard de Ménilmontant NO-SE", "2025-05-17T16:00:00Z", 48.8672, 2.3501]
CALLER = "//bigquery.googleapis.com/projects/p/jobs/j"


def record(call) -> dict:
    """The old body's record for a BigQuery call (same counter, instant, place)."""
    return {"nom_du_compteur": call[0], "date_et_heure_de_comptage": call[1],
            "coordonnées_géographiques": f"{call[2]}, {call[3]}"}


def bq_body(calls, request_id="124ab1c", **context) -> dict:
    return {"requestId": request_id, "caller": CALLER,
            "sessionUser": "test-user@test-company.com",
            "userDefinedContext": {"api_key": CLIENT_KEY, **context}, "calls": calls}


def error_message(response) -> str:
    body = response.json()
    assert set(body) == {"errorMessage"}, body
    assert isinstance(body["errorMessage"], str) and body["errorMessage"]
    assert len(response.content) < 1024, len(response.content)
    return body["errorMessage"]



# ------------------------------------------------------------------------ replies

def test_regress_replies_the_old_bodies_counts_in_order(regress):
    calls = [KNOWN, UNKNOWN, [KNOWN_COUNTER, "2025-05-20T14:30:00.123456Z", 48.86377, 2.35096]]
    r = post(regress, bq_body(calls))
    assert r.status_code == 200, r.text
    old = old_answer(regress, [record(c) for c in calls])
    assert r.json() == {"replies": old["predictions"]}
    assert all(isinstance(v, float) for v in r.json()["replies"])


def test_one_call(regress, classify):
    r = post(regress, bq_body([KNOWN]))
    assert r.status_code == 200
    assert r.json()["replies"] == old_answer(regress, [record(KNOWN)])["predictions"]
    c = post(classify, bq_body([KNOWN]))
    assert c.json()["replies"] == old_answer(classify, [record(KNOWN)])["probabilities"]


def test_user_defined_context_chooses_model_and_metric(regress):
    r = post(regress, bq_body([KNOWN, UNKNOWN], model_type="nn", metric="r2"))
    assert r.status_code == 200
    old = old_answer(regress, [record(KNOWN), record(UNKNOWN)], model_type="nn", metric="r2")
    assert r.json()["replies"] == old["predictions"]
    default = post(regress, bq_body([KNOWN, UNKNOWN])).json()["replies"]
    assert default != r.json()["replies"]  # another model answered


@pytest.mark.parametrize("output, expected", [
    ("probability", lambda old, i: old["probabilities"][i]),
    ("busy", lambda old, i: bool(old["predictions"][i])),
    ("label", lambda old, i: old["label"][i]),
    ("object", lambda old, i: {"label": old["label"][i], "probability": old["probabilities"][i]}),
])
def test_classify_outputs(classify, output, expected):
    calls = [KNOWN, UNKNOWN, [KNOWN_COUNTER, "2025-05-21T03:00:00Z", None, None]]
    r = post(classify, bq_body(calls, output=output))
    assert r.status_code == 200, r.text
    old = old_answer(classify, [record(c) for c in calls[:2]]
                     + [{"nom_du_compteur": KNOWN_COUNTER,
                         "date_et_heure_de_comptage": "2025-05-21T03:00:00Z"}])
    assert r.json()["replies"] == [expected(old, i) for i in range(3)]


def test_rows_that_cannot_be_scored_get_null_and_the_rest_are_scored(regress):
    bad = [
        [None, "2025-05-20T06:00:00Z", 48.86, 2.35],                    # null counter
        [KNOWN_COUNTER, None, None, None],                                # null timestamp
        [KNOWN_COUNTER, "20 May 2025", None, None],                       # not a timestamp
        [KNOWN_COUNTER, "0001-01-01T00:00:00Z", None, None],              # outside 2000-2100
        ["Unknown counter", "2025-05-20T06:00:00Z", None, None],          # no coordinates
        ["Unknown counter", "2025-05-20T06:00:00Z", "NaN", "Infinity"],   # no usable ones
        ["Unknown counter", "2025-05-20T06:00:00Z", 0.0, 0.0],            # far from Paris
        ["", "2025-05-20T06:00:00Z", 48.86, 2.35],                        # empty name
        [42, "2025-05-20T06:00:00Z", 48.86, 2.35],                        # not a string
    ]
    # A known counter ignores its given coordinates, even non-finite ones.
    known_nan = [KNOWN_COUNTER, "2025-05-20T06:00:00Z", "NaN", "-Infinity"]
    calls = [KNOWN, *bad, UNKNOWN, known_nan]
    r = post(regress, bq_body(calls, request_id="nulls-1"))
    assert r.status_code == 200, r.text
    replies = r.json()["replies"]
    good = old_answer(regress, [record(KNOWN), record(UNKNOWN)])["predictions"]
    assert replies == [good[0], *[None] * len(bad), good[1], good[0]]
    logged = [line for line in regress.log_lines()
              if line.get("protocol", {}).get("request_id") == "nulls-1"]
    assert len(logged) == 1, regress.log_text()[-2000:]
    assert logged[0]["protocol"] == {"name": "bigquery", "request_id": "nulls-1",
                                     "calls": len(calls), "null_replies": len(bad),
                                     "model_version": logged[0]["protocol"]["model_version"]}
    assert logged[0]["records"] == len(calls) and logged[0]["httpRequest"]["status"] == 200


def test_a_repeated_request_id_gets_the_same_replies(regress, classify):
    calls = [KNOWN, UNKNOWN, [None, None, None, None]] * 10
    for server in (regress, classify):
        first = post(server, bq_body(calls, request_id="same-id"))
        second = post(server, bq_body(calls, request_id="same-id"))
        assert first.status_code == second.status_code == 200
        assert first.content == second.content


def test_50000_calls_in_one_request(regress):
    hours = [f"2025-06-{1 + h // 24:02d}T{h % 24:02d}:00:00Z" for h in range(24 * 25)]
    calls = [[KNOWN_COUNTER if i % 2 else UNKNOWN[0], hours[i % len(hours)], 48.8672, 2.3501]
             for i in range(MAX_RECORDS)]
    r = post(regress, bq_body(calls))
    assert r.status_code == 200, r.text[:500]
    replies = r.json()["replies"]
    assert len(replies) == MAX_RECORDS and None not in replies
    assert len(r.content) < 15 * 1024 * 1024
    sample = [0, 1, 12_345, MAX_RECORDS - 1]
    old = old_answer(regress, [record(calls[i]) for i in sample])["predictions"]
    assert [replies[i] for i in sample] == old


def test_no_calls_no_replies(regress):
    r = post(regress, bq_body([]))
    assert (r.status_code, r.json()) == (200, {"replies": []})


# ------------------------------------------------------------------------- errors

@pytest.mark.parametrize("calls, words", [
    ([KNOWN, KNOWN[:3]], "calls[1]: expected 4 arguments"),
    ([KNOWN + [1]], "calls[0]: expected 4 arguments"),
    ([KNOWN, "not a list"], "calls[1]"),
    ({"0": KNOWN}, "'calls' must be a list"),
    (None, "'calls' must be a list"),
])
def test_400_malformed_calls(regress, calls, words):
    r = post(regress, bq_body(calls))
    assert r.status_code == 400
    assert words in error_message(r)


@pytest.mark.parametrize("context, words", [
    ({"model_type": "xgboost"}, "xgboost"),
    ({"metric": 3}, "userDefinedContext.metric"),
    ({"output": "probability"}, "not one of count, interval"),
])
def test_400_bad_user_defined_context(regress, context, words):
    r = post(regress, bq_body([KNOWN], **context))
    assert r.status_code == 400, r.text
    assert words in error_message(r)


def test_400_user_defined_context_not_an_object(classify):
    body = {**bq_body([KNOWN]), "userDefinedContext": ["api_key", CLIENT_KEY]}
    r = post(classify, body, headers={"X-API-Key": CLIENT_KEY})
    assert r.status_code == 400
    assert "userDefinedContext" in error_message(r)


def test_413_more_calls_than_allowed(regress):
    r = post(regress, bq_body([KNOWN] * (MAX_RECORDS + 1)))
    assert r.status_code == 413
    assert "max_batching_rows" in error_message(r)


def test_long_error_messages_stay_under_1_kb(regress):
    r = post(regress, bq_body([KNOWN], model_type="x" * 64))
    assert r.status_code == 400
    error_message(r)


def test_400_not_json_is_never_a_5xx(regress):
    r = post(regress, None, headers={"X-API-Key": CLIENT_KEY}, raw=b'{"calls": [[')
    assert r.status_code == 400


# -------------------------------------------------------------------- the API key

def test_key_in_user_defined_context_beside_a_google_id_token(regress):
    # On a private service BigQuery's Authorization header is its ID token, not our key.
    r = post(regress, bq_body([KNOWN]), headers={"Authorization": "Bearer eyJhbGciOi.id.token"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("key, status", [(None, 401), ("wrong-key", 403)])
def test_missing_or_wrong_key_is_refused_in_bigquerys_shape(regress, key, status):
    body = bq_body([KNOWN])
    body["userDefinedContext"].pop("api_key")
    if key:
        body["userDefinedContext"]["api_key"] = key
    r = post(regress, body)
    assert r.status_code == status
    assert "userDefinedContext.api_key" in error_message(r) or status == 403


def test_old_body_still_needs_its_header_key(regress):
    r = post(regress, {"records": [OLD_RECORD], "userDefinedContext": {"api_key": CLIENT_KEY}})
    assert r.status_code == 401
    assert set(r.json()) == {"error"}


# ------------------------------------------------------------------ no model yet

def test_503_when_no_model_is_published_so_bigquery_retries(tmp_path):
    with running(tmp_path, names=("regress",)) as started:
        r = post(started["regress"], bq_body([KNOWN]))
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) >= 1
    assert error_message(r)
    assert json.loads(r.content)  # valid JSON for BigQuery's job error


def test_interval_output_is_the_count_and_its_80_percent_bounds(regress):
    r = post(regress, bq_body([KNOWN], output="interval"))
    assert r.status_code == 200, r.text
    (reply,) = r.json()["replies"]
    assert set(reply) == {"count", "lower", "upper"}
    assert 0 <= reply["lower"] <= reply["count"] <= reply["upper"]
