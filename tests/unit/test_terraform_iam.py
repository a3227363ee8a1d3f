"""The Terraform configuration's IAM, parsed offline: least privilege for every
service account (no project-level role on a runtime account, exactly the roles each
needs on exactly its resources), no public access unless asked, no key anywhere."""

from __future__ import annotations

import re

import pytest

pytest.register_assert_rewrite("tests.terraform_config")

from tests.terraform_config import (  # noqa: E402
    FUNCTION_SAS,
    RUNTIME_SAS,
    _bindings_of,
    _functions,
    _iam_bindings,
    _iterates_functions,
    _of_type,
    _roles,
    _sa_ref,
    _strings,
    _text,
)

pytest_plugins = ["tests.terraform_config"]


def test_no_runtime_sa_has_a_project_level_role(tf):
    project_level = {
        k: v
        for k, v in tf["resource"].items()
        if k.split(".", 1)[0]
        in {"google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy"}
    }
    for sa in RUNTIME_SAS:
        ref = _sa_ref(sa)
        offenders = [k for k, v in project_level.items() if ref.search(_text(v))]
        assert not offenders, f"{sa} has project-level roles via {offenders}"
    offenders = [k for k, v in project_level.items() if "google_service_account.fn" in _text(v)]
    assert not offenders, f"function SAs have project-level roles via {offenders}"
    # Whatever is project-level belongs to the build account, or to the GitHub
    # deployer and planner of github.tf (their roles: tests/unit/test_github_terraform.py).
    ci_identity = re.compile(r"google_service_account\.github_(deployer|planner)\[0\]")
    for name, body in project_level.items():
        member = body.get("member", "")
        assert _sa_ref("build").search(member) or ci_identity.search(member), \
            f"{name} is not for the build SA"


@pytest.mark.parametrize("sa", FUNCTION_SAS)
def test_function_sa_holds_exactly_models_and_counts_reader_and_secret_accessor(tf, sa):
    bindings = _bindings_of(tf, sa)
    grants = {(k.split(".", 1)[0], role) for k, v in bindings.items() for role in _roles(v)}
    assert grants == {
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
        ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor"),
    }, grants

    assert sa in _functions(tf)
    for key, body in bindings.items():
        # A binding written with each.* must range over every function.
        if "each." in body.get("member", ""):
            assert _iterates_functions(body), f"{key} does not iterate over local.functions"
        if key.startswith("google_storage_bucket_iam_member."):
            assert body["bucket"] in ("${google_storage_bucket.models.name}",
                                      "${google_storage_bucket.data.name}"), key
            # The data bucket only under its counts/ condition (next test).
            assert ("condition" in body) == (body["bucket"] == "${google_storage_bucket.data.name}")
        else:
            text = _text(body)
            assert "google_secret_manager_secret.api_keys" in text, key
            assert "google_secret_manager_secret.admin_key" in text, key


def test_trainer_can_create_and_read_models_and_counts_but_not_delete(tf):
    bindings = _bindings_of(tf, "trainer")
    grants = {
        (k.split(".", 1)[0], role)
        for k, v in bindings.items()
        if k.split(".", 1)[0] != "google_service_account_iam_member"  # who may impersonate it
        for role in _roles(v)
    }
    assert grants == {
        ("google_storage_bucket_iam_member", "roles/storage.objectCreator"),
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
    }, grants
    buckets = {body["bucket"] for key, body in bindings.items()
               if key.startswith("google_storage_bucket_iam_member.")}
    assert buckets == {"${google_storage_bucket.models.name}", "${google_storage_bucket.data.name}"}


def test_scheduler_may_only_run_the_retrain_job(tf):
    bindings = _bindings_of(tf, "scheduler")
    assert {k.split(".", 1)[0] for k in bindings} == {"google_cloud_run_v2_job_iam_member"}, bindings
    (body,) = bindings.values()
    assert body["role"] == "roles/run.invoker"
    assert body["name"] == "${google_cloud_run_v2_job.retrain.name}"
    (job,) = _of_type(tf, "google_cloud_scheduler_job").values()
    assert job["schedule"] == "${var.trainer_schedule}"
    target = job["http_target"][0] if isinstance(job["http_target"], list) else job["http_target"]
    assert target["uri"].endswith(":run") and target["http_method"] == "POST"


def test_models_bucket_readers_and_writers(tf):
    on_models = {
        k: v
        for k, v in _of_type(tf, "google_storage_bucket_iam_member").items()
        if v["bucket"] == "${google_storage_bucket.models.name}"
    }
    members = set()
    for key, body in on_models.items():
        member = re.sub(r"^\$\{|\.member\}$", "", body["member"])
        if member == "google_service_account.fn[each.key]":
            # for_each over local.functions: one binding per function account.
            assert body["for_each"] == "${local.functions}", key
            members |= {f'google_service_account.fn["{fn}"]' for fn in _functions(tf)}
        else:
            members.add(member)
    assert members == {'google_service_account.fn["classify"]', 'google_service_account.fn["regress"]'} | {
        f"google_service_account.{sa}" for sa in RUNTIME_SAS if sa not in FUNCTION_SAS
    }
    for body in on_models.values():
        assert _roles(body) <= {"roles/storage.objectViewer", "roles/storage.objectCreator"}


def test_build_sa_roles(tf):
    grants = {role for v in _bindings_of(tf, "build").values() for role in _roles(v)}
    assert {"roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectViewer"} <= grants
    assert not any(r in grants for r in ("roles/owner", "roles/editor", "roles/storage.admin"))


def test_no_broad_roles_anywhere(tf):
    for name, body in _iam_bindings(tf).items():
        for role in _roles(body):
            assert role not in {"roles/owner", "roles/editor", "roles/viewer"}, name
            assert not role.endswith(".admin"), f"{name} grants {role}"


def test_all_users_only_under_var_public(tf):
    found = False
    for kind in ("resource", "data", "locals"):
        for s in _strings(tf[kind]):
            if "allAuthenticatedUsers" in s:
                pytest.fail(f"allAuthenticatedUsers granted: {s}")
            if "allUsers" in s:
                found = True
                assert re.search(r'var\.public\s*\?\s*\[\s*"allUsers"\s*\]', s), s
    assert found, "var.public no longer grants allUsers; update this test"


def test_invokers_use_run_invoker_on_each_function(tf):
    invokers = _of_type(tf, "google_cloud_run_v2_service_iam_member")
    # The BigQuery connection's grant is checked in tests/unit/test_bigquery_terraform.py.
    invokers.pop("google_cloud_run_v2_service_iam_member.bigquery_invoker")
    assert set(invokers) == {"google_cloud_run_v2_service_iam_member.fn_invoker"}
    for name, body in invokers.items():
        assert body["role"] == "roles/run.invoker", name
        assert body["location"] == "${var.region}", name
        assert "var.invoker_members" in body["for_each"], name
        # One binding per (function, member): every function gets an invoker.
        assert "setproduct(keys(local.functions)" in body["for_each"], name
        assert body["name"] == "${google_cloudfunctions2_function.fn[each.value.function].name}", name
        assert body["member"] == "${each.value.member}", name
    # The 1st-gen role or the function-level IAM resource would not grant invocation.
    assert not _of_type(tf, "google_cloudfunctions2_function_iam_member")
    assert "roles/cloudfunctions.invoker" not in _text(tf["resource"])


def test_no_service_account_keys(tf):
    assert not _of_type(tf, "google_service_account_key")


def test_functions_read_only_the_counts_prefix_of_the_data_bucket(tf):
    """GET /counts reads counts/manifests/ and counts/days/; nothing else of the data
    bucket is theirs (the condition), and nothing of it is writable (the role)."""
    on_data = {k: v for k, v in _of_type(tf, "google_storage_bucket_iam_member").items()
               if v["bucket"] == "${google_storage_bucket.data.name}"
               and "google_service_account.fn" in v["member"]}
    assert list(on_data) == ["google_storage_bucket_iam_member.fn_counts_reader"]
    (body,) = on_data.values()
    assert body["for_each"] == "${local.functions}" and body["role"] == "roles/storage.objectViewer"
    condition = body["condition"][0] if isinstance(body["condition"], list) else body["condition"]
    expression = condition["expression"].replace('\\"', '"')  # HCL keeps the escapes
    objects = "projects/_/buckets/${google_storage_bucket.data.name}/objects/counts/"
    assert expression == (f'resource.name.startsWith("{objects}") || api.getAttribute('
                          '"storage.googleapis.com/objectListPrefix", "").startsWith("counts/")')
    # What the functions read is inside it: the data bucket's root, the reader's
    # prefixes (velocast.serving.measured).
    from velocast.serving import measured

    assert tf["locals"]["function_env"]["COUNTS_STORE"] == "gs://${google_storage_bucket.data.name}"
    assert measured.MANIFESTS.startswith("counts/")
