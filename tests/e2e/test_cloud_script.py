"""scripts/cloud.sh (what `make plan|deploy|publish|api-key|...` run) against stand-in
terraform and gcloud: it stops with a helpful message when a prerequisite is missing,
calls terraform as documented, rotates keys without ever printing them to a log, and
publishes write-once (into a fake-gcs-server bucket).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from velocast.core.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_SCRIPT = ROOT / "scripts" / "package.py"
CLOUD_SCRIPT = ROOT / "scripts" / "cloud.sh"

pytest_plugins = ["tests.gcs_fixtures"]


# Stand-ins for terraform and gcloud: bash builtins only, so that PATH can hold
# nothing else. They log their arguments and play a deployed stack.
FAKE_TERRAFORM = r"""#!/bin/bash
printf 'terraform %s\n' "$*" >>"$FAKE_LOG"
case "$*" in
  "version -json") printf '{"terraform_version": "%s"}\n' "${FAKE_TF_VERSION:-1.9.8}" ;;
  *" output -raw api_keys_secret_id") printf 'velocast-api-keys' ;;
  *" output -raw admin_key_secret_id") printf 'velocast-admin-key' ;;
  *" output -raw models_bucket") printf '%s' "${FAKE_BUCKET:-p-velocast-models}" ;;
  *" output -raw trainer_service_account") printf 'velocast-trainer@p.iam.gserviceaccount.com' ;;
  *" output -json function_urls") printf '{"classify": "https://classify.example", "regress": "https://regress.example"}' ;;
esac
exit 0
"""

FAKE_GCLOUD = r"""#!/bin/bash
printf 'gcloud %s\n' "$*" >>"$FAKE_LOG"
case "$*" in
  "auth list "*) printf '%s\n' "${FAKE_ACCOUNT:-}" ;;
  "auth application-default print-access-token") exit "${FAKE_ADC_RC:-0}" ;;
  "secrets versions access latest "*)
    if [[ -n "${FAKE_SECRET:-}" ]]; then printf '%s' "$FAKE_SECRET"; exit 0; fi
    printf 'ERROR: (gcloud.secrets.versions.access) NOT_FOUND: Secret [x] not found or has no versions.\n' >&2
    exit 1 ;;
  "secrets versions add "*)
    # Test double only: keep what would have been sent to Secret Manager.
    payload="$(</dev/stdin)"
    printf '%s' "$payload" >"$FAKE_ADDED" ;;
esac
exit 0
"""


@pytest.fixture
def fake_cloud(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("terraform", FAKE_TERRAFORM), ("gcloud", FAKE_GCLOUD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for tool in ("mktemp", "rm"):  # the only external commands cloud.sh needs after its checks
        os.symlink(shutil.which(tool), bin_dir / tool)
    tfvars = tmp_path / "terraform.tfvars"
    tfvars.write_text('project_id = "velocast-test-123"\nregion = "europe-west9"\n')
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "TFVARS": str(tfvars),
           "FAKE_LOG": str(log), "FAKE_ADDED": str(tmp_path / "added"),
           "FAKE_ACCOUNT": "ana@example.com", "LANG": "C.UTF-8"}
    return env, log, tmp_path


def _cloud(command: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(CLOUD_SCRIPT), command], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env, cwd="/")


def test_cloud_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(CLOUD_SCRIPT)]).returncode == 0
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(CLOUD_SCRIPT)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_cloud_deploy_without_terraform_or_gcloud_says_what_to_install(tmp_path):
    empty = tmp_path / "empty-bin"  # PATH with neither terraform nor gcloud (nor anything)
    empty.mkdir()
    result = _cloud("deploy", {"PATH": str(empty), "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "terraform is not on PATH" in result.stderr
    assert "https://developer.hashicorp.com/terraform/install" in result.stderr


@pytest.mark.parametrize("command", ["plan", "deploy", "destroy", "publish", "api-key", "admin-key"])
def test_cloud_commands_check_gcloud(fake_cloud, command):
    env, _, _ = fake_cloud
    (Path(env["PATH"]) / "gcloud").unlink()
    result = _cloud(command, env)
    assert result.returncode != 0
    assert "gcloud (the Google Cloud CLI) is not on PATH" in result.stderr
    assert "gcloud auth login" in result.stderr


def test_cloud_checks_terraform_version(fake_cloud):
    env, _, _ = fake_cloud
    result = _cloud("plan", {**env, "FAKE_TF_VERSION": "1.4.6"})
    assert result.returncode != 0 and "too old" in result.stderr and ">= 1.5" in result.stderr


def test_cloud_needs_an_active_account_and_adc(fake_cloud):
    env, _, _ = fake_cloud
    result = _cloud("deploy", {**env, "FAKE_ACCOUNT": ""})
    assert result.returncode != 0
    assert "no active account" in result.stderr and "gcloud auth login" in result.stderr
    result = _cloud("deploy", {**env, "FAKE_ADC_RC": "1"})
    assert result.returncode != 0
    assert "gcloud auth application-default login" in result.stderr


def test_cloud_needs_tfvars_with_a_real_project(fake_cloud):
    env, _, tmp = fake_cloud
    result = _cloud("deploy", {**env, "TFVARS": str(tmp / "missing.tfvars")})
    assert result.returncode != 0
    assert ("copy terraform/terraform.tfvars.example to terraform/terraform.tfvars and set "
            "project_id") in result.stderr
    example = tmp / "example.tfvars"
    example.write_text((ROOT / "terraform" / "terraform.tfvars.example").read_text())
    result = _cloud("deploy", {**env, "TFVARS": str(example)})
    assert result.returncode != 0 and "my-gcp-project" in result.stderr


def test_cloud_deploy_inits_and_applies_with_the_tfvars(fake_cloud):
    env, log, _ = fake_cloud
    built = all((ROOT / "build" / fn / "main.py").exists() for fn in TASK_NAMES)
    if not built:
        subprocess.run([sys.executable, str(PACKAGE_SCRIPT)], check=True, capture_output=True)
    result = _cloud("deploy", {**env, "AUTO_APPROVE": "1"})
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    tf = [c for c in calls if c.startswith("terraform -chdir=")]
    assert tf[0] == f"terraform -chdir={ROOT / 'terraform'} init -input=false"
    assert tf[1] == (f"terraform -chdir={ROOT / 'terraform'} apply -var-file={env['TFVARS']} "
                     "-auto-approve")
    assert "classify: https://classify.example" in result.stderr
    assert "regress: https://regress.example" in result.stderr and "make api-key" in result.stderr
    assert "output -json function_urls" in log.read_text()


def test_cloud_api_key_adds_a_key_and_keeps_the_old_ones(fake_cloud):
    env, log, tmp = fake_cloud
    result = _cloud("api-key", {**env, "FAKE_SECRET": "old1\nold2\n"})
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert len(key) >= 40 and "\n" not in key  # token_urlsafe(32): 43 chars
    assert (tmp / "added").read_text().split("\n") == [key, "old1", "old2"]
    assert "gcloud secrets versions add velocast-api-keys --project=velocast-test-123 " \
           "--data-file=-" in log.read_text()
    assert "KEEP_ONLY_NEW=1" in result.stderr  # how to retire the old keys
    assert key not in log.read_text()  # never on a command line

    again = _cloud("api-key", {**env, "FAKE_SECRET": "old1\nold2\n", "KEEP_ONLY_NEW": "1"})
    assert again.returncode == 0, again.stderr
    assert (tmp / "added").read_text().split("\n") == [again.stdout.strip()]
    assert again.stdout.strip() != key


def test_cloud_api_key_on_an_empty_secret(fake_cloud):
    env, _, tmp = fake_cloud
    result = _cloud("api-key", env)  # the fake secret has no version yet
    assert result.returncode == 0, result.stderr
    assert (tmp / "added").read_text().split("\n") == [result.stdout.strip()]


def test_cloud_admin_key_replaces_the_admin_key(fake_cloud):
    env, log, tmp = fake_cloud
    result = _cloud("admin-key", {**env, "FAKE_SECRET": "previous-admin"})
    assert result.returncode == 0, result.stderr
    assert (tmp / "added").read_text().split("\n") == [result.stdout.strip()]
    assert "secrets versions add velocast-admin-key" in log.read_text()
    assert "secrets versions access" not in log.read_text()


def test_cloud_publish_copies_a_folder_store_write_once(fake_cloud, fake_gcs, trained_store):
    from velocast.catalog import registry

    env, log, _ = fake_cloud
    bucket = fake_gcs.new_bucket("publish")
    env = {**env, **fake_gcs.env, "FAKE_BUCKET": bucket, "FROM": str(trained_store)}
    result = _cloud("publish", env)
    assert result.returncode == 0, result.stderr
    objects = sorted(p.relative_to(trained_store).as_posix()
                     for p in trained_store.rglob("*") if p.is_file())
    assert f"{len(objects)} object(s) copied, 0 already there" in result.stderr
    destination = fake_gcs.store(bucket)
    assert destination.list("") == objects
    assert {e.task for e in registry.list_entries(destination)} == {"classify", "regress"}

    # Again: nothing is overwritten, nothing fails.
    again = _cloud("publish", env)
    assert again.returncode == 0, again.stderr
    assert f"0 object(s) copied, {len(objects)} already there" in again.stderr
    assert "output -raw models_bucket" in log.read_text()


def test_cloud_publish_refuses_missing_data(fake_cloud):
    env, _, tmp = fake_cloud
    result = _cloud("publish", {**env, "DATA": str(tmp / "nope.csv")})
    assert result.returncode != 0 and "nope.csv not found" in result.stderr
    result = _cloud("publish", {**env, "FROM": str(tmp / "no-store")})
    assert result.returncode != 0 and "is not a folder store" in result.stderr


def test_cloud_retire_keys_keeps_the_newest(fake_cloud):
    env, log, tmp = fake_cloud
    result = _cloud("retire-keys", {**env, "FAKE_SECRET": "newest\nolder\noldest\n"})
    assert result.returncode == 0, result.stderr
    assert (tmp / "added").read_text().split("\n") == ["newest"]
    assert result.stdout == "" and "2 older key(s)" in result.stderr  # no key printed

    result = _cloud("retire-keys", {**env, "FAKE_SECRET": "newest\nolder\noldest", "KEEP": "2"})
    assert result.returncode == 0, result.stderr
    assert (tmp / "added").read_text().split("\n") == ["newest", "older"]

    (tmp / "added").unlink()
    result = _cloud("retire-keys", {**env, "FAKE_SECRET": "only"})
    assert result.returncode == 0 and "nothing to retire" in result.stderr
    assert not (tmp / "added").exists()
    result = _cloud("retire-keys", {**env, "KEEP": "0"})
    assert result.returncode != 0 and "KEEP=0" in result.stderr
