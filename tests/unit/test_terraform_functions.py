"""The functions in Terraform: one typed map (`var.functions`), one for_each per
per-function resource, outputs keyed by function, API keys mounted from Secret
Manager. Checked on the parsed HCL (tests/terraform_config.py); the map's validations and
the plan-time preconditions are run by the real terraform binary on a
provider-free extract (test_terraform_functions_plan.py, tests/tf_plan.py).
"""

from __future__ import annotations

import re

import pytest

pytest.register_assert_rewrite("tests.terraform_config")

from tests.terraform_config import (  # noqa: E402
    FUNCTION_ENV,
    FUNCTION_SAS,
    _block,
    _functions,
    _iterates_functions,
    _object_attributes,
    _optional_defaults,
    _text,
)

pytest_plugins = ["tests.terraform_config"]


# Every attribute of a var.functions entry and where the function resource uses it.
SERVICE_ATTRIBUTES = {
    "memory": "available_memory",
    "cpu": "available_cpu",
    "min_instances": "min_instance_count",
    "max_instances": "max_instance_count",
    "concurrency": "max_instance_request_concurrency",
    "timeout_seconds": "timeout_seconds",
}
BUILD_ATTRIBUTES = {"runtime": "runtime", "entry_point": "entry_point"}


def test_functions_map(tf):
    functions = _functions(tf)
    # One function per Task (velocast.core.tasks.TASKS), no more, no less.
    assert set(functions) == set(FUNCTION_SAS)
    # The local resolves the typed variable; nothing per function is written by hand.
    assert tf["locals"]["functions"].startswith("${{for name, fn in var.functions : name => merge(fn, {")
    assert "entry_point = coalesce(fn.entry_point, name)" in tf["locals"]["functions"]
    # Every per-function resource is one block iterating over the map.
    for key in (
        "google_cloudfunctions2_function.fn",
        "google_service_account.fn",
        "google_storage_bucket_object.bundle",
        "google_storage_bucket_iam_member.fn_models_reader",
    ):
        assert tf["resource"][key]["for_each"] == "${local.functions}", key
    assert tf["data"]["archive_file.bundle"]["for_each"] == "${local.functions}"
    for key in (
        "google_secret_manager_secret_iam_member.fn_secret_accessor",
        "google_cloud_run_v2_service_iam_member.fn_invoker",
    ):
        assert _iterates_functions(tf["resource"][key]), key
    # No per-function copy left beside the for_each blocks.
    for fn in FUNCTION_SAS:
        leftovers = [k for k in list(tf["resource"]) + list(tf["data"]) if re.search(rf"\.{fn}(_|$)", k)]
        assert not leftovers, leftovers


@pytest.mark.parametrize("fn", FUNCTION_SAS)
def test_source_object_name_is_content_hashed(tf, fn):
    assert fn in _functions(tf)
    archive = tf["data"]["archive_file.bundle"]
    assert archive["for_each"] == "${local.functions}"
    assert archive["type"] == "zip"
    assert archive["source_dir"] == "${var.source_dir}/${each.key}"
    assert archive["output_path"] == "${path.module}/.bundles/${each.key}.zip"
    obj = tf["resource"]["google_storage_bucket_object.bundle"]
    assert obj["for_each"] == "${local.functions}"
    assert re.fullmatch(
        r"\$\{each\.key\}-\$\{data\.archive_file\.bundle\[each\.key\]\.output_(md5|sha256|base64sha256)\}\.zip",
        obj["name"],
    ), obj["name"]
    assert obj["source"] == "${data.archive_file.bundle[each.key].output_path}"
    assert obj["bucket"] == "${google_storage_bucket.sources.name}"

    build = _block(tf["resource"]["google_cloudfunctions2_function.fn"], "build_config")
    storage = _block(_block(build, "source"), "storage_source")
    assert storage["object"] == "${google_storage_bucket_object.bundle[each.key].name}"
    assert storage["bucket"] == "${google_storage_bucket.sources.name}"


@pytest.mark.parametrize("fn", FUNCTION_SAS)
def test_function_build_and_runtime(tf, fn):
    spec = _functions(tf)[fn]
    body = tf["resource"]["google_cloudfunctions2_function.fn"]
    assert body["for_each"] == "${local.functions}"
    assert body["name"] == "${var.name_prefix}-${each.key}"
    assert body["location"] == "${var.region}"
    assert body["description"] == "${each.value.description}"
    assert spec["description"].startswith("velocast: ")
    assert "velocast.core.tasks" not in spec["description"]

    sa = tf["resource"]["google_service_account.fn"]
    assert sa["for_each"] == "${local.functions}"
    assert sa["account_id"] == "${var.name_prefix}-${each.key}"

    build = _block(body, "build_config")
    assert build["runtime"] == "${each.value.runtime}"
    assert spec["runtime"] == "python312"
    assert build["entry_point"] == "${each.value.entry_point}"
    assert spec["entry_point"] == fn
    assert "google_service_account.build" in _text(build["service_account"]) or (
        build["service_account"] == "${local.build_service_account}"
        and "projects/${var.project_id}/serviceAccounts/${google_service_account.build.email}"
        == tf["locals"]["build_service_account"]
    )

    service = _block(body, "service_config")
    assert service["service_account_email"] == "${google_service_account.fn[each.key].email}"
    # Sizing and scaling come from the function's own map entry, none from a global.
    for attribute, argument in SERVICE_ATTRIBUTES.items():
        assert service[argument] == f"${{each.value.{attribute}}}", argument
    for attribute, argument in BUILD_ATTRIBUTES.items():
        assert build[argument] == f"${{each.value.{attribute}}}", argument
    # The sizes the two functions had as separate variables, now map defaults.
    assert spec["memory"] == {"classify": "512Mi", "regress": "1Gi"}.get(fn, "512Mi")
    assert (spec["min_instances"], spec["max_instances"], spec["timeout_seconds"]) == (0, 5, 60)
    assert "var.ingress_settings" in service["ingress_settings"]

    # THREADS follows each function's concurrency (tests/unit/test_bigquery_terraform.py).
    assert service["environment_variables"] == \
        "${merge(local.function_env, {THREADS = tostring(each.value.concurrency)})}"
    env = tf["locals"]["function_env"]
    assert set(env) == FUNCTION_ENV
    assert env["MODEL_STORE"] == "gs://${google_storage_bucket.models.name}"
    assert env["API_KEYS_FILE"] == "${local.secret_files.api_keys.mount_path}/${local.secret_files.api_keys.path}"
    assert env["ADMIN_KEY_FILE"] == "${local.secret_files.admin_key.mount_path}/${local.secret_files.admin_key.path}"

    # Secrets are read at run time, never baked into the revision.
    assert "secret_environment_variables" not in service
    assert not [k for k in env if k.endswith("_SECRET")], env

    # Memory must fit the CPU, checked per function at plan time.
    conditions = _text(body["lifecycle"])
    assert "each.value.memory_mib <= each.value.max_memory_mib" in conditions
    assert "each.value.memory_mib >= each.value.min_memory_mib" in conditions
    assert "each.value.concurrency == 1 || tonumber(each.value.cpu) >= 1" in conditions
    assert "each.value.min_instances <= each.value.max_instances" in conditions

    depends = _text(body.get("depends_on", []))
    assert "google_project_service" in depends
    assert "google_storage_bucket_iam_member.fn_models_reader" in depends
    assert "google_secret_manager_secret_iam_member.fn_secret_accessor" in depends


def test_functions_variable_is_typed_and_validates_every_attribute(tf):
    variable = tf["variable"]["functions"]
    assert variable["type"].startswith("${map(object({")
    attributes = _object_attributes(variable["type"])
    assert attributes == {"description", *SERVICE_ATTRIBUTES, *BUILD_ATTRIBUTES}
    conditions = [v["condition"] for v in variable["validation"]]
    for attribute in attributes:
        assert any(re.search(rf"\bfn\.{attribute}\b", c) for c in conditions), f"{attribute} not validated"
    # The keys too: they name service accounts (30 chars with the prefix) and bundles.
    assert any("keys(var.functions)" in c for c in conditions)
    for validation in variable["validation"]:
        assert validation["error_message"].startswith("functions"), validation["error_message"]
    # Only description is required; everything else has a default.
    assert set(_optional_defaults(variable["type"])) == attributes - {"description", "entry_point"}


def test_no_per_function_variables_left(tf):
    for fn in FUNCTION_SAS:
        assert not [v for v in tf["variable"] if v.startswith(f"{fn}_")], fn
    for old in ("available_cpu", "min_instances", "max_instances", "concurrency", "timeout_seconds"):
        assert old not in tf["variable"], f"{old} belongs in var.functions"


# Cloud Functions' SecretVolume.mount_path: "Restricted mount paths: /cloudsql,
# /dev/log, /pod, /proc, /var/log".
RESTRICTED_MOUNTS = ("/cloudsql", "/dev/log", "/pod", "/proc", "/var/log")


def test_keys_are_secret_volumes_read_at_latest(tf):
    service = _block(tf["resource"]["google_cloudfunctions2_function.fn"], "service_config")
    [dynamic] = [d["secret_volumes"] for d in service["dynamic"] if "secret_volumes" in d]
    assert dynamic["for_each"] == "${local.secret_files}"
    [content] = dynamic["content"]
    assert content["mount_path"] == "${secret_volumes.value.mount_path}"
    assert content["secret"] == "${secret_volumes.value.secret}"
    assert content["project_id"] == "${var.project_id}"
    # "latest", re-read by the platform on every read of the file: rotation needs no redeploy.
    assert content["versions"] == [{"version": "latest", "path": "${secret_volumes.value.path}"}]

    files = tf["locals"]["secret_files"]
    assert {name: f["secret"] for name, f in files.items()} == {
        "api_keys": "${google_secret_manager_secret.api_keys.secret_id}",
        "admin_key": "${google_secret_manager_secret.admin_key.secret_id}",
    }
    # The paths velocast.serving.auth documents, each secret on a mount of its own (a mount
    # shadows its folder), none nested in another or in a restricted path.
    paths = {name: f"{f['mount_path']}/{f['path']}" for name, f in files.items()}
    assert paths == {"api_keys": "/etc/secrets/api-keys/keys", "admin_key": "/etc/secrets/admin-key/key"}
    mounts = [f["mount_path"] for f in files.values()]
    for mount in mounts:
        assert not mount.startswith(RESTRICTED_MOUNTS), mount
        assert not [m for m in mounts if m != mount and m.startswith(mount + "/")], mounts
    assert len(set(mounts)) == len(mounts)


def test_ingress_is_a_validated_choice(tf):
    var = tf["variable"]["ingress_settings"]
    assert var["default"] == "ALLOW_ALL"
    condition = var["validation"][0]["condition"]
    for value in ("ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"):
        assert value in condition
