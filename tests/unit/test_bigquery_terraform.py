"""terraform/bigquery.tf, read with python-hcl2: everything sits behind var.bigquery,
the connection's account may invoke the two functions and nothing else, and every
routine's SQL signature is what the functions accept (velocast.serving.protocols)."""

from __future__ import annotations

import json
import re

import pytest

pytest.register_assert_rewrite("tests.terraform_config")

from tests.terraform_config import TF_DIR, _iam_bindings, _load, _text  # noqa: E402
from velocast.serving.protocols import BIGQUERY_ARGUMENTS, OUTPUTS  # noqa: E402
from velocast.core.tasks import TASK_NAMES  # noqa: E402

pytest_plugins = ["tests.terraform_config"]

BQ_RESPONSE_LIMIT = 15 * 1024 * 1024
ROUTINE = "google_bigquery_routine.remote"
INVOKER = "google_cloud_run_v2_service_iam_member.bigquery_invoker"
CONNECTION_SA = "google_bigquery_connection.functions[0].cloud_resource[0].service_account_id"


def bigquery_doc() -> dict:
    return _load(TF_DIR / "bigquery.tf")


def test_variables_are_typed_validated_and_off_by_default(tf):
    v = tf["variable"]
    assert v["bigquery"]["type"] == "bool" and v["bigquery"]["default"] is False
    for name in ("bigquery_dataset_id", "bigquery_location", "bigquery_max_batching_rows",
                 "bigquery_api_key"):
        assert v[name]["validation"], name
        assert v[name]["description"].strip(), name
    assert v["bigquery_api_key"]["sensitive"] is True and v["bigquery_api_key"]["default"] is None


def test_every_bigquery_resource_is_behind_the_switch(tf):
    doc = bigquery_doc()
    resources = {f"{t}.{n}": body for entry in doc["resource"] for t, named in entry.items()
                 for n, body in named.items()}
    assert set(resources) == {
        "google_project_service.bigquery", "google_bigquery_dataset.velocast",
        "google_bigquery_connection.functions", INVOKER, ROUTINE}
    for name, body in resources.items():
        switch = _text(body.get("count", "")) + _text(body.get("for_each", ""))
        assert switch.startswith("${var.bigquery ?"), (name, switch)


def test_connection_is_a_cloud_resource_one(tf):
    body = tf["resource"]["google_bigquery_connection.functions"]
    assert "cloud_resource" in body
    assert body["location"] == "${local.bigquery_location}"
    dataset = tf["resource"]["google_bigquery_dataset.velocast"]
    assert dataset["location"] == body["location"], "routines must live where their connection is"


def test_connection_account_invokes_both_functions_and_nothing_else(tf):
    invoker = tf["resource"][INVOKER]
    assert invoker["for_each"] == "${var.bigquery ? local.functions : {}}"
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["name"] == "${google_cloudfunctions2_function.fn[each.key].name}"
    assert invoker["location"] == "${var.region}"
    assert invoker["member"] == "serviceAccount:${" + CONNECTION_SA + "}"
    holders = [name for name, body in _iam_bindings(tf).items() if CONNECTION_SA in _text(body)]
    assert holders == [INVOKER]


def test_routine_signatures_match_what_the_functions_accept(tf):
    body = tf["resource"][ROUTINE]
    assert body["for_each"] == "${var.bigquery ? local.bigquery_routines : {}}"
    assert body["routine_type"] == "SCALAR_FUNCTION" and body["definition_body"] == ""
    dynamic = body["dynamic"][0]["arguments"]
    assert dynamic["for_each"] == "${local.bigquery_arguments}"
    assert dynamic["content"][0] == {"name": "${arguments.value.name}",
                                     "data_type": "${jsonencode({typeKind = arguments.value.type})}"}
    declared = tuple((a["name"], a["type"]) for a in tf["locals"]["bigquery_arguments"])
    assert declared == BIGQUERY_ARGUMENTS
    assert body["return_type"] == "${jsonencode({typeKind = each.value.return_type})}"

    routines = tf["locals"]["bigquery_routines"]
    assert {"predict_count", "is_busy"} <= set(routines)
    tasks = set(TASK_NAMES)  # one function per Task (local.functions)
    for name, spec in routines.items():
        assert spec["function"] in tasks, name
        # The reply kind the routine asks for exists for that function and has the
        # SQL type the routine declares.
        assert OUTPUTS[spec["function"]].get(spec["output"]) == spec["return_type"], name
    assert routines["predict_count"] == {**routines["predict_count"], "function": "regress",
                                         "return_type": "FLOAT64"}

    options = body["remote_function_options"][0]
    assert options["endpoint"] == \
        "${google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri}"
    assert options["connection"] == "${google_bigquery_connection.functions[0].name}"
    assert options["max_batching_rows"] == "${tostring(var.bigquery_max_batching_rows)}"
    assert options["user_defined_context"] == {"output": "${each.value.output}",
                                               "api_key": "${var.bigquery_api_key}"}
    assert "var.bigquery_api_key != null" in _text(body["lifecycle"])


def test_functions_take_a_whole_batch(tf):
    env = tf["locals"]["function_env"]
    assert env["MAX_RECORDS"] == ("${tostring(var.bigquery ? max(var.max_records, "
                                  "var.bigquery_max_batching_rows) : var.max_records)}")
    # One gunicorn thread per request Cloud Run may send an instance.
    fn = tf["resource"]["google_cloudfunctions2_function.fn"]
    assert fn["service_config"][0]["environment_variables"] == \
        "${merge(local.function_env, {THREADS = tostring(each.value.concurrency)})}"
    assert fn["service_config"][0]["max_instance_request_concurrency"] == \
        "${each.value.concurrency}"


def _upper_bound(condition: str, name: str) -> int:
    found = re.search(rf"var\.{name} <= (\d+)", condition)
    assert found, condition
    return int(found.group(1))


def test_largest_allowed_batch_stays_under_bigquerys_response_limit(tf):
    most = _upper_bound(tf["variable"]["bigquery_max_batching_rows"]["validation"][0]["condition"],
                        "bigquery_max_batching_rows")
    # MAX_RECORDS allows it (a bigger batch would be a 413 on every call).
    assert most <= _upper_bound(tf["variable"]["max_records"]["validation"][0]["condition"],
                                "max_records")
    # The widest reply any output gives (JSON as the service writes it).
    widest = max(len(json.dumps(reply, ensure_ascii=False)) + 2 for reply in (
        99999.9, {"count": 99999.9, "lower": 99999.9, "upper": 99999.9},
        {"label": "faible", "probability": 0.1234}, "faible", False))
    assert most * widest + len('{"replies": []}') < BQ_RESPONSE_LIMIT
