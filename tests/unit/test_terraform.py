"""Static checks of the Terraform configuration (no provider, no cloud access).

`terraform validate` cannot run offline (it needs the provider schemas), so the
security properties that matter are asserted on the parsed HCL instead: who
holds which role on what, that nothing secret reaches the state, that a code
change redeploys. The formatting check and the checkov scan run the real tools.
IAM is tests/unit/test_terraform_iam.py; the parsing, tests/terraform_config.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytest.register_assert_rewrite("tests.terraform_config")

from tests.checkov_run import checkov_summary  # noqa: E402
from tests.terraform_config import (  # noqa: E402
    FUNCTION_SAS,
    ROOT,
    TF_DIR,
    TF_FILES,
    _block,
    _functions,
    _load,
    _of_type,
    _text,
)

pytest_plugins = ["tests.terraform_config"]


# ---------------------------------------------------------------------------
# Parsing itself
# ---------------------------------------------------------------------------


def test_every_tf_file_parses():
    for path in TF_FILES:
        _load(path)


def test_expected_files_present():
    names = {p.name for p in TF_FILES}
    for required in (
        "versions.tf",
        "variables.tf",
        "apis.tf",
        "storage.tf",
        "secrets.tf",
        "iam.tf",
        "functions.tf",
        "outputs.tf",
    ):
        assert required in names
    assert (TF_DIR / "terraform.tfvars.example").is_file()


def test_provider_pins():
    doc = _load(TF_DIR / "versions.tf")
    terraform = doc["terraform"][0]
    assert terraform["required_version"] == ">= 1.5"
    providers = terraform["required_providers"][0]
    assert providers["google"]["source"] == "hashicorp/google"
    assert providers["google"]["version"] == ">= 6.41, < 8"
    assert providers["archive"]["source"] == "hashicorp/archive"
    assert providers["archive"]["version"] == ">= 2.5"


# ---------------------------------------------------------------------------
# Variables, outputs, example tfvars
# ---------------------------------------------------------------------------


def test_every_variable_has_description_and_type(tf):
    assert tf["variable"]
    for name, body in tf["variable"].items():
        assert body.get("description", "").strip(), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"


def test_free_form_variables_are_validated(tf):
    # Booleans cannot be wrong; everything else a user types is checked at plan time.
    for name, body in tf["variable"].items():
        if body["type"] == "bool":
            continue
        assert body.get("validation"), f"variable {name} has no validation block"


def test_variable_defaults_are_safe(tf):
    v = tf["variable"]
    assert v["public"]["default"] is False
    assert v["force_destroy_buckets"]["default"] is False
    assert v["invoker_members"]["default"] == []
    assert v["page_origins"]["default"] == [], "no other origin may call by default"
    for name, spec in _functions(tf).items():
        assert spec["min_instances"] == 0, f"{name}: something would run (and bill) at rest"
        assert spec["concurrency"] == 8, name
        assert spec["cpu"] == "1", f"{name}: concurrency > 1 needs a full CPU"
    assert v["source_dir"]["default"] == "../build"
    assert "default" not in v["project_id"], "project_id must be chosen explicitly"


def test_invoker_members_validation_rejects_public_principals(tf):
    condition = tf["variable"]["invoker_members"]["validation"][0]["condition"]
    for prefix in ("user", "serviceAccount", "group"):
        assert prefix in condition
    assert "allUsers" not in condition and "allAuthenticatedUsers" not in condition


def test_every_output_has_description(tf):
    assert tf["output"]
    for name, body in tf["output"].items():
        assert body.get("description", "").strip(), f"output {name} has no description"


def test_required_outputs(tf):
    for name in (
        "function_urls",
        "function_service_accounts",
        "models_bucket",
        "source_bucket",
        "trainer_service_account",
        "build_service_account",
        "api_keys_secret_id",
        "admin_key_secret_id",
    ):
        assert name in tf["output"], f"missing output {name}"
    outputs = tf["output"]
    # Keyed by function, so a new function needs no new output (scripts/cloud.sh reads the map).
    assert outputs["function_urls"]["value"] == (
        "${{for name, fn in google_cloudfunctions2_function.fn : name => fn.url}}")
    assert outputs["function_service_accounts"]["value"] == (
        "${{for name, sa in google_service_account.fn : name => sa.email}}")
    for fn in FUNCTION_SAS:
        assert not any(name.startswith(f"{fn}_") for name in outputs), f"per-function output for {fn}"


def test_tfvars_example_covers_required_variables(tf):
    example = _load(TF_DIR / "terraform.tfvars.example")
    required = {n for n, b in tf["variable"].items() if "default" not in b}
    assert required <= set(example), f"example lacks {required - set(example)}"
    unknown = set(example) - set(tf["variable"])
    assert not unknown, f"example sets undeclared variables {unknown}"


# ---------------------------------------------------------------------------
# APIs
# ---------------------------------------------------------------------------


def test_apis_enabled_and_kept_on_destroy(tf):
    services = _of_type(tf, "google_project_service")
    assert services
    text = _text(services)
    for api in (
        "cloudfunctions",
        "run",
        "cloudbuild",
        "artifactregistry",
        "secretmanager",
        "storage",
        "iam",
        "logging",
    ):
        assert f"{api}.googleapis.com" in text, f"API {api} not enabled"
    for name, body in services.items():
        assert body.get("disable_on_destroy") is False, name


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def test_secrets_declared_without_values(tf):
    secrets = _of_type(tf, "google_secret_manager_secret")
    ids = {v["secret_id"] for v in secrets.values()}
    assert ids == {"${var.name_prefix}-api-keys", "${var.name_prefix}-admin-key"}
    for name, body in secrets.items():
        replication = _block(body, "replication")
        assert "auto" in replication, f"{name}: replication must be auto"
    for name, body in _of_type(tf, "google_secret_manager_secret_version").items():
        assert not any(k.startswith("secret_data") for k in body), f"{name} puts a secret in state"


# ---------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------


def test_buckets_are_hardened(tf):
    buckets = _of_type(tf, "google_storage_bucket")
    assert {"google_storage_bucket.models", "google_storage_bucket.sources"} <= set(buckets)
    for name, body in buckets.items():
        assert body["uniform_bucket_level_access"] is True, name
        assert body["public_access_prevention"] == "enforced", name
        assert _block(body, "versioning")["enabled"] is True, name
        assert _block(body, "soft_delete_policy")["retention_duration_seconds"], name
        assert body.get("lifecycle_rule"), f"{name} has no lifecycle rule"


def test_models_and_sources_access_is_logged_by_default(tf):
    assert tf["variable"]["access_logs"]["default"] is True
    for name in ("google_storage_bucket.models", "google_storage_bucket.sources"):
        logging = _text(tf["resource"][name].get("logging", "")) + _text(tf["resource"][name].get("dynamic", ""))
        assert "google_storage_bucket.access_logs" in logging, f"{name} does not log access"


def test_models_bucket_lifecycle_only_touches_noncurrent_versions(tf):
    models = tf["resource"]["google_storage_bucket.models"]
    assert models["force_destroy"] == "${var.force_destroy_buckets}"
    conditions = [_block(rule, "condition") for rule in models["lifecycle_rule"]]
    assert any("num_newer_versions" in c for c in conditions)
    assert any("days_since_noncurrent_time" in c for c in conditions)
    for c in conditions:
        # `age` alone would delete live, published models.
        assert "age" not in c, c


def test_sources_bucket_expires_old_zips(tf):
    sources = tf["resource"]["google_storage_bucket.sources"]
    conditions = [_block(rule, "condition") for rule in sources["lifecycle_rule"]]
    assert any("age" in c for c in conditions)


def test_checkov_skips_carry_reasons():
    skip = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(:?)(.*)")
    for path in TF_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            m = skip.search(line)
            if m:
                assert m.group(2) == ":" and len(m.group(3).strip()) > 20, f"{path.name}: {line.strip()}"


# ---------------------------------------------------------------------------
# Real tools
# ---------------------------------------------------------------------------


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform binary not on PATH")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "terraform"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"terraform fmt found unformatted files:\n{result.stdout}{result.stderr}"


# Registered in pyproject ([tool.pytest.ini_options] markers); deselect with -m "not checkov".
@pytest.mark.checkov
def test_checkov_passes():
    checkov_summary()
