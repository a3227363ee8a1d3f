#!/usr/bin/env bash
# One-time setup of "Deploy from GitHub" (README), run by a project owner from a
# checkout that has terraform/terraform.tfvars:
#
#   scripts/bootstrap-github.sh OWNER/REPO
#
#   1. creates the Terraform state bucket <project_id>-<name_prefix>-tfstate
#      (versioned, uniform access, public access prevented) unless it exists;
#   2. points Terraform at it (terraform/backend.tf) and moves any local state there;
#   3. adds github_repository and github_state_bucket to terraform.tfvars;
#   4. runs `make deploy`, which now also creates the identity pool, the GitHub
#      provider and the deployer and planner accounts (terraform/github.tf);
#   5. prints the `gh` commands that set the repository variables and the
#      protected "production" environment the workflows use.
#
# Running it again is safe: every step checks what exists. Needs gcloud (logged
# in, with Application Default Credentials), terraform and make.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TFVARS="$ROOT/terraform/terraform.tfvars"

die() {
  printf 'bootstrap-github.sh: error: %s\n' "$1" >&2
  shift
  local line
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}
say() { printf 'bootstrap-github.sh: %s\n' "$@" >&2; }

repo="${1:-}"
[[ "$repo" =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[A-Za-z0-9._-]{1,100}$ ]] ||
  die "usage: scripts/bootstrap-github.sh OWNER/REPO   (the GitHub repository that will deploy)"

for tool in gcloud terraform make; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH (README, Deploy to Google Cloud: Prerequisites)."
done
[[ -f "$TFVARS" ]] || die "terraform/terraform.tfvars not found." \
  "cp terraform/terraform.tfvars.example terraform/terraform.tfvars and set project_id first."

# A plain `key = "value"` line of terraform.tfvars, or $2.
tfvar() {
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" =~ ^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\" ]]; then
      printf '%s' "${BASH_REMATCH[1]}"
      return
    fi
  done <"$TFVARS"
  printf '%s' "$2"
}

# Adds `key = "value"` to terraform.tfvars, or checks the line already there.
set_tfvar() {
  local current
  current="$(tfvar "$1" "")"
  if [[ -z "$current" ]]; then
    printf '\n%s = "%s"\n' "$1" "$2" >>"$TFVARS"
    say "terraform.tfvars: added $1 = \"$2\""
  elif [[ "$current" != "$2" ]]; then
    die "terraform.tfvars sets $1 = \"$current\", not \"$2\"." "Edit or remove that line, then run this again."
  fi
}

project="$(tfvar project_id "")"
[[ -n "$project" && "$project" != "my-gcp-project" ]] || die "set project_id in terraform/terraform.tfvars first."
region="$(tfvar region europe-west1)"
prefix="$(tfvar name_prefix velocast)"
bucket="$project-$prefix-tfstate"

# 1. The state bucket. Not in Terraform: the state has to live somewhere before
# Terraform runs. Versioning keeps every past state (a bad apply can be undone).
gcloud services enable storage.googleapis.com --project="$project"
if gcloud storage buckets describe "gs://$bucket" --project="$project" --format='value(name)' >/dev/null 2>&1; then
  say "state bucket gs://$bucket exists"
else
  gcloud storage buckets create "gs://$bucket" --project="$project" --location="$region" \
    --uniform-bucket-level-access --public-access-prevention
  say "created state bucket gs://$bucket"
fi
gcloud storage buckets update "gs://$bucket" --versioning

# 2. Terraform state in the bucket; a local terraform.tfstate is copied there.
"$ROOT/scripts/tf-backend.sh" "$bucket"
terraform -chdir="$ROOT/terraform" init -input=false -migrate-state -force-copy

# 3-4. The GitHub identities, with everything else.
set_tfvar github_repository "$repo"
set_tfvar github_state_bucket "$bucket"
make -C "$ROOT" deploy

# 5. What GitHub needs. Printed, not run: setting variables and environments
# takes admin rights on the repository, which this machine may not hold.
output() { terraform -chdir="$ROOT/terraform" output -raw "$1"; }
cat <<EOF

Now, with admin rights on $repo (gh auth login), set the repository variables:

  gh variable set GCP_WORKLOAD_IDENTITY_PROVIDER --repo $repo --body "$(output github_workload_identity_provider)"
  gh variable set GCP_DEPLOYER_SERVICE_ACCOUNT --repo $repo --body "$(output github_deployer_service_account)"
  gh variable set GCP_PLANNER_SERVICE_ACCOUNT --repo $repo --body "$(output github_planner_service_account)"
  gh variable set TF_STATE_BUCKET --repo $repo --body "$bucket"
  gh variable set GCP_REGION --repo $repo --body "$region"
  gh variable set VELOCAST_TFVARS --repo $repo < terraform/terraform.tfvars

and the "production" environment: required reviewers, deployments from main only
(REVIEWER_ID: gh api users/<login> --jq .id; or Settings > Environments):

  gh api -X PUT repos/$repo/environments/production --input - <<'JSON'
  {"reviewers": [{"type": "User", "id": REVIEWER_ID}], "prevent_self_review": false,
   "deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true}}
JSON
  gh api -X POST repos/$repo/environments/production/deployment-branch-policies -f name=main -f type=branch

Then every pull request gets a plan, and every merge into main deploys once approved.
EOF
