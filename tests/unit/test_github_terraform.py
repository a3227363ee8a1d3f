"""terraform/github.tf: the keyless GitHub Actions identities, checked on the parsed HCL.

Who may obtain a Google token (the provider's condition), as which account (the
workloadIdentityUser bindings), and what each account may then do: exactly the
roles `make deploy` needs, nothing that reads a key or grants arbitrary roles.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_terraform import _load

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"

DEPLOYER_ROLES = {
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
    "roles/artifactregistry.admin",
    "roles/cloudfunctions.developer",
    "roles/iam.serviceAccountAdmin",
}


@pytest.fixture(scope="module")
def github() -> dict[str, Any]:
    doc = _load(TF / "github.tf")
    resources = {
        f"{rtype}.{name}": body
        for entry in doc["resource"]
        for rtype, named in entry.items()
        for name, body in named.items()
    }
    locals_: dict[str, Any] = {}
    for entry in doc["locals"]:
        locals_.update(entry)
    return {"resource": resources, "locals": locals_, "output": {k: v for e in doc["output"] for k, v in e.items()}}


@pytest.fixture(scope="module")
def variables() -> dict[str, Any]:
    return {k: v for e in _load(TF / "github-variables.tf")["variable"] for k, v in e.items()}


def test_nothing_is_created_until_a_repository_is_named(github, variables):
    assert variables["github_repository"]["default"] == ""
    assert github["locals"]["github"] == '${var.github_repository != ""}'
    for name, body in github["resource"].items():
        gate = str(body.get("count", "")) + str(body.get("for_each", ""))
        assert "local.github" in gate, f"{name} is created without github_repository"


def test_repository_variable_accepts_owner_slash_repo_only(variables):
    condition = variables["github_repository"]["validation"][0]["condition"]
    pattern = re.search(r'regex\("(.+?)", var\.github_repository\)', condition).group(1).replace("\\\\", "\\")
    for ok in ("ana/velocast", "Org-1/velo.cast_2", "a/b"):
        assert re.match(pattern, ok), ok
    for bad in ("velocast", "ana/", "/velocast", "ana/velo/cast", "-ana/velocast", "ana velo/cast"):
        assert not re.match(pattern, bad), bad


def test_provider_trusts_only_this_repository_its_pull_requests_and_its_environment(github):
    provider = github["resource"]["google_iam_workload_identity_pool_provider.github"]
    assert provider["oidc"][0]["issuer_uri"] == "https://token.actions.githubusercontent.com"
    mapping = provider["attribute_mapping"]
    assert mapping["google.subject"] == "assertion.sub"
    assert mapping["attribute.repository"] == "assertion.repository"
    condition = provider["attribute_condition"]
    assert "assertion.repository == '${var.github_repository}'" in condition
    assert "assertion.sub == 'repo:${var.github_repository}:pull_request'" in condition
    assert (
        "assertion.sub == 'repo:${var.github_repository}:environment:${var.github_environment}'"
        " && assertion.ref == 'refs/heads/${var.github_deploy_branch}'"
    ) in condition


def test_each_account_is_usable_from_one_kind_of_job_only(github):
    loc, res = github["locals"], github["resource"]
    assert loc["github_deployer_subject"] == "repo:${var.github_repository}:environment:${var.github_environment}"
    assert loc["github_planner_subject"] == "repo:${var.github_repository}:pull_request"
    for account in ("deployer", "planner"):
        binding = res[f"google_service_account_iam_member.github_{account}_wif"]
        assert binding["role"] == "roles/iam.workloadIdentityUser"
        assert binding["member"] == f"${{local.github_{account}_principal}}"
        assert binding["service_account_id"] == f"${{google_service_account.github_{account}[0].name}}"
        principal = loc[f"github_{account}_principal"]
        # One subject (principal://), never a whole repository (principalSet://).
        assert principal.startswith("principal://iam.googleapis.com/${local.github_pool_name}/subject/")
    wif = [k for k, v in res.items() if v.get("role") == "roles/iam.workloadIdentityUser"]
    assert sorted(wif) == [
        "google_service_account_iam_member.github_deployer_wif",
        "google_service_account_iam_member.github_planner_wif",
    ]


def test_deployer_holds_exactly_the_roles_make_deploy_needs(github):
    res = github["resource"]
    # `local.github ? { "role" = "why", ... } : {}`: the roles are the map's keys.
    roles = github["locals"]["github_deployer_roles"]
    assert roles.endswith(": {}}")
    assert set(re.findall(r'"(roles/[^"]+)"\s*=', roles)) == DEPLOYER_ROLES
    assert res["google_project_iam_member.github_deployer"]["for_each"] == "${local.github_deployer_roles}"
    text = (TF / "github.tf").read_text(encoding="utf-8")
    for role in DEPLOYER_ROLES:
        # A why-comment right above each role.
        assert re.search(rf"#[^\n]*\n\s*\"{re.escape(role)}\"", text), f"{role} has no comment"
    project_roles = {
        body["role"] for key, body in res.items()
        if key.startswith("google_project_iam_member.github_deployer") and "each." not in body["role"]
    }
    assert project_roles == {
        "${google_project_iam_custom_role.github_deployer[0].name}",
        "roles/resourcemanager.projectIamAdmin",
    }
    for forbidden in ("roles/owner", "roles/editor", "roles/secretmanager.admin", "roles/run.admin"):
        assert forbidden not in text


def test_deployer_may_grant_only_the_stacks_own_project_roles(github):
    iam_admin = github["resource"]["google_project_iam_member.github_deployer_iam"]
    assert iam_admin["role"] == "roles/resourcemanager.projectIamAdmin"
    expression = iam_admin["condition"][0]["expression"]
    assert "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(" in expression
    assert "local.github_grantable_roles" in expression
    # Exactly the project-level roles iam.tf grants to the build account.
    iam_tf = (TF / "iam.tf").read_text(encoding="utf-8")
    project_grants = set(re.findall(r'resource "google_project_iam_member"[^{]*\{[^}]*?role\s*=\s*"([^"]+)"', iam_tf))
    assert set(github["locals"]["github_grantable_roles"]) == project_grants


def test_deployer_never_reads_a_key(github):
    permissions = github["locals"]["github_deployer_permissions"]
    assert "secretmanager.versions.access" not in permissions
    assert not any(p.startswith("secretmanager.versions.") for p in permissions)
    assert "secretmanager.secrets.setIamPolicy" in permissions
    assert not any(p.endswith((".setIamPolicy", ".create")) and p.startswith("resourcemanager.") for p in permissions)


def test_deployer_acts_as_the_function_and_build_accounts_only(github):
    res, loc = github["resource"], github["locals"]
    act_as = res["google_service_account_iam_member.github_deployer_act_as"]
    assert act_as["role"] == "roles/iam.serviceAccountUser"
    assert act_as["for_each"] == "${local.github ? local.github_act_as : {}}"
    text = str(loc["github_act_as"])
    assert "google_service_account.fn[fn].name" in text and "google_service_account.build.name" in text
    trainer = res["google_service_account_iam_member.github_deployer_trainer"]
    assert trainer["role"] == "roles/iam.serviceAccountTokenCreator"
    assert trainer["service_account_id"] == "${google_service_account.trainer.name}"
    assert not any(
        body.get("role") in ("roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator")
        for key, body in res.items() if key.startswith("google_project_iam_member.")
    ), "actAs or token creation project-wide"


def test_planner_only_reads_the_state_and_the_project(github):
    res = github["resource"]
    grants = {
        (key.split(".")[0], body["role"]) for key, body in res.items()
        if "github_planner[0].member" in str(body.get("member", ""))
    }
    assert grants == {
        ("google_project_iam_member", "roles/browser"),
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
    }
    state = res["google_storage_bucket_iam_member.github_planner_state"]
    assert state["bucket"] == "${var.github_state_bucket}"


def test_outputs_name_the_repository_variables_the_workflows_read(github):
    deploy = (ROOT / ".github" / "workflows" / "deploy.yml").read_text(encoding="utf-8")
    for output, variable in (
        ("github_workload_identity_provider", "GCP_WORKLOAD_IDENTITY_PROVIDER"),
        ("github_deployer_service_account", "GCP_DEPLOYER_SERVICE_ACCOUNT"),
        ("github_planner_service_account", "GCP_PLANNER_SERVICE_ACCOUNT"),
    ):
        assert variable in github["output"][output]["description"]
        assert f"vars.{variable}" in deploy
