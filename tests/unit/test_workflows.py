"""The GitHub Actions workflows (.github/workflows), checked offline.

No GitHub here, so the workflows are validated by the tools a reviewer would run:
GitHub's workflow schema (check-jsonschema), zizmor's security audits and checkov's
github_actions framework, plus the supply-chain rules of this project asserted
directly: every third-party action pinned to a full commit with its version beside
it, least privilege per job, no credentials left in the checkout.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from tests.checkov_run import checkov_summary

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = [WORKFLOWS_DIR / "ci.yml", WORKFLOWS_DIR / "deploy.yml"]
BIN = Path(sys.executable).parent

# The action that trades the job's OIDC token for a Google token: the only
# reason a job may hold id-token: write.
AUTH_ACTION = "google-github-actions/auth"
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
PINNED = re.compile(r"^(?P<action>[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^v\d+(\.\d+){0,2}$")


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict[str, Any]]:
    for path in WORKFLOWS:
        assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    return {path.name: _load(path) for path in WORKFLOWS}


def _jobs(workflows: dict) -> Iterator[tuple[str, str, dict]]:
    for name, doc in workflows.items():
        for job_id, job in doc["jobs"].items():
            yield name, job_id, job


def _uses(job: dict) -> list[str]:
    refs = [job["uses"]] if "uses" in job else []
    return refs + [step["uses"] for step in job.get("steps", []) if "uses" in step]


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


# ---------------------------------------------------------------------------
# Real tools
# ---------------------------------------------------------------------------


def test_workflows_match_githubs_schema():
    result = _run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_malformed_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    step: []\n", encoding="utf-8")
    result = _run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(bad)])
    assert result.returncode != 0, "the schema check would pass anything"


def _zizmor(paths: list[Path]) -> list[dict]:
    result = _run([str(BIN / "zizmor"), "--offline", "--format", "json", *map(str, paths)])
    # Exit status: 0 without findings, 10 + the highest severity with some; 1-9 is an error.
    assert result.returncode == 0 or result.returncode >= 10, result.stderr
    findings = json.loads(result.stdout)
    assert isinstance(findings, list), result.stdout[:500]
    return findings


def _serious(findings: list[dict]) -> list[str]:
    return [
        f"{f['ident']} ({f['determinations']['severity']}): {f['desc']} at "
        + ", ".join(
            f"{loc['symbolic']['key']['Local']['verbatim_path']}:{loc['concrete']['location']['start_point']['row'] + 1}"
            for loc in f["locations"]
            if "Local" in loc["symbolic"]["key"]
        )
        for f in findings
        if f["determinations"]["severity"] in ("Medium", "High") and not f.get("ignored")
    ]


def test_zizmor_finds_nothing_at_medium_or_above():
    findings = _zizmor(WORKFLOWS)
    assert _serious(findings) == []
    assert not any(f.get("ignored") for f in findings), "a zizmor finding is silenced in a workflow"


def test_zizmor_flags_what_this_project_forbids(tmp_path):
    # Proves the audit above can fail: tag-pinned actions, write-all permissions,
    # an event field expanded into a script and a checkout that keeps its token
    # then uploads the whole tree.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    permissions: write-all\n"
        "    steps:\n"
        "      - uses: actions/checkout@v7\n"
        "      - run: echo \"${{ github.event.pull_request.title }}\"\n"
        "      - uses: actions/upload-artifact@v7\n"
        "        with:\n"
        "          path: .\n",
        encoding="utf-8",
    )
    idents = {f["ident"] for f in _zizmor([bad]) if f["determinations"]["severity"] in ("Medium", "High")}
    assert {"unpinned-uses", "artipacked", "excessive-permissions", "template-injection"} <= idents, idents


@pytest.mark.checkov
def test_checkov_github_actions_passes():
    checkov_summary("--github-actions")


# ---------------------------------------------------------------------------
# Supply chain: pinning
# ---------------------------------------------------------------------------


def _uses_lines() -> list[tuple[str, int, str, str | None]]:
    found = []
    for path in WORKFLOWS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = USES_LINE.match(line)
            if m:
                found.append((path.name, number, m.group("ref"), m.group("comment")))
    return found


def test_every_third_party_action_is_pinned_to_a_commit_with_its_version(workflows):
    lines = _uses_lines()
    parsed = sorted(ref for _, _, job in _jobs(workflows) for ref in _uses(job))
    assert sorted(ref for _, _, ref, _ in lines) == parsed, "a uses: the line scan did not see"
    third_party = [entry for entry in lines if not entry[2].startswith("./")]
    assert third_party
    for name, number, ref, comment in third_party:
        where = f"{name}:{number}: {ref}"
        assert PINNED.match(ref), f"{where} is not pinned to a full 40-hex commit"
        assert comment and VERSION_COMMENT.match(comment.strip()), f"{where} lacks a '# vX.Y.Z' comment"


def test_each_action_is_pinned_to_one_commit_and_version_everywhere():
    pins: dict[str, set[tuple[str, str]]] = {}
    for _, _, ref, comment in _uses_lines():
        m = PINNED.match(ref)
        if m:
            pins.setdefault(m.group("action"), set()).add((m.group("sha"), (comment or "").strip()))
    assert pins
    drift = {action: sorted(p) for action, p in pins.items() if len(p) > 1}
    assert not drift, f"the same action at several commits: {drift}"


def test_local_uses_point_at_files_that_exist(workflows):
    for name, job_id, job in _jobs(workflows):
        for ref in _uses(job):
            if ref.startswith("./"):
                assert (ROOT / ref).is_file(), f"{name} {job_id}: {ref} does not exist"


# ---------------------------------------------------------------------------
# Supply chain: permissions and credentials
# ---------------------------------------------------------------------------


def test_workflows_grant_nothing_by_default(workflows):
    for name, doc in workflows.items():
        assert doc.get("permissions") == {}, f"{name}: set `permissions: {{}}` at the top; jobs ask for theirs"


def test_every_job_states_minimal_permissions(workflows):
    allowed = {"contents": {"read"}, "id-token": {"write"}}
    for name, job_id, job in _jobs(workflows):
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{name} {job_id}: no job-level permissions mapping"
        for scope, level in perms.items():
            assert scope in allowed and level in allowed[scope], f"{name} {job_id}: {scope}: {level}"


def test_id_token_write_only_where_google_auth_happens(workflows):
    for name, job_id, job in _jobs(workflows):
        authenticates = any(ref.startswith(AUTH_ACTION + "@") for ref in _uses(job))
        has_id_token = job.get("permissions", {}).get("id-token") == "write"
        assert authenticates == has_id_token, f"{name} {job_id}: id-token: write iff {AUTH_ACTION} runs"


def test_google_auth_is_keyless(workflows):
    auth_steps = [
        step for _, _, job in _jobs(workflows) for step in job.get("steps", [])
        if step.get("uses", "").startswith(AUTH_ACTION + "@")
    ]
    assert auth_steps
    for step in auth_steps:
        inputs = step.get("with", {})
        assert "credentials_json" not in inputs, "a JSON key is used"
        assert inputs["workload_identity_provider"] == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"
        assert inputs["service_account"].startswith("${{ vars.GCP_")
    assert "secrets." not in "".join(p.read_text(encoding="utf-8") for p in WORKFLOWS), "no secret is needed"


def test_checkouts_do_not_keep_the_token(workflows):
    checkouts = [
        (name, job_id, step) for name, job_id, job in _jobs(workflows) for step in job.get("steps", [])
        if step.get("uses", "").startswith("actions/checkout@")
    ]
    assert checkouts
    for name, job_id, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"{name} {job_id}"


def test_no_expression_is_expanded_inside_a_script(workflows):
    # Contexts reach scripts through env:, never spliced into the shell text.
    for name, job_id, job in _jobs(workflows):
        for step in job.get("steps", []):
            assert "${{" not in step.get("run", ""), f"{name} {job_id}: {step.get('name', step['run'][:40])}"


def test_every_job_on_a_runner_has_a_timeout(workflows):
    for name, job_id, job in _jobs(workflows):
        if "runs-on" in job:
            assert 0 < job.get("timeout-minutes", 0) <= 60, f"{name} {job_id}"


# ---------------------------------------------------------------------------
# What the pipeline does
# ---------------------------------------------------------------------------


def _steps_text(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


def test_ci_runs_what_dot_ci_run_runs(workflows):
    ci = workflows["ci.yml"]
    assert set(ci["on"]) == {"push", "pull_request", "workflow_call"}
    (job,) = ci["jobs"].values()
    assert "bash .ci/run" in _steps_text(job)
    dot_ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make install" in dot_ci and "make test" in dot_ci
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["cache"] == "pip"
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["if-no-files-found"] == "ignore"


def test_main_deploys_only_after_the_tests_and_an_approval(workflows):
    deploy = workflows["deploy.yml"]
    branch = deploy["on"]["push"]["branches"]
    # ci.yml leaves the deploy branch to deploy.yml, which calls it: the tests run
    # once per push there, and the deploy job needs them.
    assert workflows["ci.yml"]["on"]["push"]["branches-ignore"] == branch == ["main"]
    jobs = deploy["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    apply = jobs["deploy"]
    assert apply["needs"] == "ci"
    assert apply["environment"] == "production"
    text = _steps_text(apply)
    assert "make package" in text
    assert re.search(r"terraform -chdir=terraform apply .*tfplan", text), "apply exactly the plan shown"
    assert "scripts/smoke_health.py" in text and "classify=" in text and "regress=" in text


def test_pull_requests_plan_read_only(workflows):
    plan = workflows["deploy.yml"]["jobs"]["plan"]
    assert "github.event_name == 'pull_request'" in plan["if"]
    assert "environment" not in plan
    auth = next(s for s in plan["steps"] if s.get("uses", "").startswith(AUTH_ACTION + "@"))
    assert auth["with"]["service_account"] == "${{ vars.GCP_PLANNER_SERVICE_ACCOUNT }}"
    text = _steps_text(plan)
    assert "make package" in text
    assert "-refresh=false" in text and "-lock=false" in text
    assert " apply" not in text
    assert "GITHUB_STEP_SUMMARY" in text


def test_manual_run_publishes_or_starts_the_retrain_job(workflows):
    deploy = workflows["deploy.yml"]
    task = deploy["on"]["workflow_dispatch"]["inputs"]["task"]
    assert task["type"] == "choice" and task["options"] == ["publish", "retrain"]
    job = deploy["jobs"]["operate"]
    assert job["environment"] == "production"
    assert "github.ref == 'refs/heads/main'" in job["if"]
    steps = {s.get("if"): s for s in job["steps"] if "if" in s}
    assert "make publish" in steps["inputs.task == 'publish'"]["run"]
    assert steps["inputs.task == 'publish'"]["env"]["AS_TRAINER"] == "1"
    retrain = steps["inputs.task == 'retrain'"]["run"]
    assert "gcloud run jobs describe" in retrain and "gcloud run jobs execute" in retrain


def test_workflows_and_terraform_agree_on_environment_and_branch():
    variables = (ROOT / "terraform" / "github-variables.tf").read_text(encoding="utf-8")

    def default(name: str) -> str:
        m = re.search(rf'variable "{name}" {{.*?default\s*=\s*"([^"]*)"', variables, re.S)
        assert m, name
        return m.group(1)

    deploy = _load(WORKFLOWS_DIR / "deploy.yml")
    assert default("github_environment") == deploy["jobs"]["deploy"]["environment"]
    assert [default("github_deploy_branch")] == deploy["on"]["push"]["branches"]
