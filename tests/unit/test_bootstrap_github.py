"""scripts/bootstrap-github.sh, run against stand-ins of gcloud, terraform and make.

No Google Cloud here: the stand-ins record every command line and answer like the
real tools would for a fresh project (no state bucket yet), so the test checks what
the script asks of them, in which order, and what it leaves in terraform/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STUB = """#!/usr/bin/env bash
printf '%s %s\\n' "$(basename "$0")" "$*" >> "$CALLS"
case "$(basename "$0") $*" in
  "gcloud storage buckets describe"*) [ -f "$STATE/bucket" ] || exit 1 ;;
  "gcloud storage buckets create"*) touch "$STATE/bucket" ;;
  "terraform "*"output -raw github_workload_identity_provider")
    printf 'projects/123/locations/global/workloadIdentityPools/velocast-github/providers/github-oidc' ;;
  "terraform "*"output -raw github_deployer_service_account") printf 'velocast-deployer@p.iam.gserviceaccount.com' ;;
  "terraform "*"output -raw github_planner_service_account") printf 'velocast-planner@p.iam.gserviceaccount.com' ;;
esac
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "terraform").mkdir()
    for script in ("bootstrap-github.sh", "tf-backend.sh"):
        shutil.copy2(ROOT / "scripts" / script, repo / "scripts" / script)
    (repo / "terraform" / "terraform.tfvars").write_text(
        'project_id = "velo-test-1"\nregion = "europe-west9"\n', encoding="utf-8"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "terraform", "make"):
        (bin_dir / tool).write_text(STUB, encoding="utf-8")
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "state").mkdir()
    return repo


def _bootstrap(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tmp = repo.parent
    env = {
        "PATH": f"{tmp / 'bin'}:/usr/bin:/bin",
        "CALLS": str(tmp / "calls.txt"),
        "STATE": str(tmp / "state"),
        "HOME": str(tmp),
    }
    return subprocess.run(
        ["bash", str(repo / "scripts" / "bootstrap-github.sh"), *args],
        capture_output=True, text=True, timeout=60, env=env,
    )


def _calls(repo: Path) -> list[str]:
    return (repo.parent / "calls.txt").read_text(encoding="utf-8").splitlines()


def test_fresh_project_gets_bucket_backend_identities_and_instructions(checkout):
    result = _bootstrap(checkout, "ana/velocast")
    assert result.returncode == 0, result.stderr
    calls = _calls(checkout)
    bucket = "gs://velo-test-1-velocast-tfstate"
    create = next(c for c in calls if c.startswith("gcloud storage buckets create"))
    assert create.split()[4] == bucket
    for flag in ("--project=velo-test-1", "--location=europe-west9",
                 "--uniform-bucket-level-access", "--public-access-prevention"):
        assert flag in create.split(), flag
    assert f"gcloud storage buckets update {bucket} --versioning" in calls

    order = [
        next(i for i, c in enumerate(calls) if c.startswith(prefix))
        for prefix in ("gcloud storage buckets create", "terraform -chdir=", "make -C")
    ]
    assert order == sorted(order), calls
    init = next(c for c in calls if c.startswith("terraform") and " init " in f"{c} ")
    assert "-migrate-state" in init and "-force-copy" in init
    assert next(c for c in calls if c.startswith("make")).endswith(" deploy")

    backend = (checkout / "terraform" / "backend.tf").read_text(encoding="utf-8")
    assert 'bucket = "velo-test-1-velocast-tfstate"' in backend and 'backend "gcs"' in backend
    tfvars = (checkout / "terraform" / "terraform.tfvars").read_text(encoding="utf-8")
    assert 'github_repository = "ana/velocast"' in tfvars
    assert 'github_state_bucket = "velo-test-1-velocast-tfstate"' in tfvars

    out = result.stdout
    assert "gh variable set GCP_WORKLOAD_IDENTITY_PROVIDER --repo ana/velocast --body " \
           '"projects/123/locations/global/workloadIdentityPools/velocast-github/providers/github-oidc"' in out
    assert '"velocast-deployer@p.iam.gserviceaccount.com"' in out
    assert '"velocast-planner@p.iam.gserviceaccount.com"' in out
    assert "gh variable set VELOCAST_TFVARS --repo ana/velocast < terraform/terraform.tfvars" in out
    assert "repos/ana/velocast/environments/production" in out


def test_running_it_again_creates_nothing_twice(checkout):
    assert _bootstrap(checkout, "ana/velocast").returncode == 0
    first = len(_calls(checkout))
    result = _bootstrap(checkout, "ana/velocast")
    assert result.returncode == 0, result.stderr
    second = _calls(checkout)[first:]
    assert not any(c.startswith("gcloud storage buckets create") for c in second)
    tfvars = (checkout / "terraform" / "terraform.tfvars").read_text(encoding="utf-8")
    assert tfvars.count("github_repository") == 1 and tfvars.count("github_state_bucket") == 1


def test_refuses_to_switch_an_already_configured_repository(checkout):
    tfvars = checkout / "terraform" / "terraform.tfvars"
    tfvars.write_text(tfvars.read_text(encoding="utf-8") + 'github_repository = "bob/velocast"\n', encoding="utf-8")
    result = _bootstrap(checkout, "ana/velocast")
    assert result.returncode == 1
    assert 'sets github_repository = "bob/velocast"' in result.stderr
    assert not any(c.startswith("make") for c in _calls(checkout))


@pytest.mark.parametrize("args", [(), ("velocast",), ("ana/velo/cast",)])
def test_refuses_anything_but_owner_slash_repo(checkout, args):
    result = _bootstrap(checkout, *args)
    assert result.returncode == 1
    assert "usage: scripts/bootstrap-github.sh OWNER/REPO" in result.stderr
    assert not os.path.exists(checkout.parent / "calls.txt")


def test_refuses_the_example_project(checkout):
    (checkout / "terraform" / "terraform.tfvars").write_text('project_id = "my-gcp-project"\n', encoding="utf-8")
    result = _bootstrap(checkout, "ana/velocast")
    assert result.returncode == 1
    assert "set project_id" in result.stderr
