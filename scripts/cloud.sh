#!/usr/bin/env bash
# velocast on Google Cloud: what `make plan|deploy|publish|api-key|admin-key|destroy` runs.
#
#   scripts/cloud.sh plan        terraform init + plan with terraform/terraform.tfvars
#   scripts/cloud.sh deploy      terraform init + apply (asks for "yes" unless AUTO_APPROVE=1)
#   scripts/cloud.sh publish     train on DATA and publish into the models bucket, or
#                                FROM=<folder store> copies already-trained models there
#   scripts/cloud.sh api-key     add a new random client key; the existing keys stay valid
#                                (KEEP_ONLY_NEW=1: the new key only, retiring the others)
#   scripts/cloud.sh retire-keys keep only the newest client key (KEEP=N: the N newest),
#                                once clients use the key the last api-key printed
#   scripts/cloud.sh admin-key   replace the admin key (POST /refresh) by a new random one
#   scripts/cloud.sh destroy     terraform destroy (asks for "yes" unless AUTO_APPROVE=1)
#
# Environment: TFVARS (default terraform/terraform.tfvars), DATA (default
# data/paris-sample.csv, generated when missing), MODELS (default: all), FROM,
# KEEP_ONLY_NEW, AUTO_APPROVE, AS_TRAINER (publish as the trainer service account),
# PROJECT (default: project_id from TFVARS).
#
# Keys are generated here, piped to `gcloud secrets versions add --data-file=-` and
# printed once: never written to disk, never passed on a command line, never in
# Terraform state. Every command first checks what it needs and says how to fix it.
set -euo pipefail

# Builtins only until the prerequisites are checked (no dirname, sed...).
src="${BASH_SOURCE[0]}"
[[ "$src" == */* ]] || src="./$src"
ROOT="$(cd "${src%/*}/.." && pwd)"
TF_DIR="$ROOT/terraform"
CALLER_DIR="$PWD"
cd "$ROOT"

# TFVARS is relative to the repository (as in the Makefile); DATA and FROM to where
# the command was typed (the same place when run through make).
TFVARS="${TFVARS:-terraform/terraform.tfvars}"
[[ "$TFVARS" == /* ]] || TFVARS="$ROOT/$TFVARS"
SAMPLE="$ROOT/data/paris-sample.csv"
DATA="${DATA:-$SAMPLE}"
[[ "$DATA" == /* ]] || DATA="$CALLER_DIR/$DATA"
FROM="${FROM:-}"
[[ -z "$FROM" || "$FROM" == /* ]] || FROM="$CALLER_DIR/$FROM"
PY="$ROOT/.venv/bin/python"
MIN_TERRAFORM="1.5"

say() { printf 'cloud.sh: %s\n' "$@" >&2; }

die() {
  printf 'cloud.sh: error: %s\n' "$1" >&2
  shift
  local line
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}

usage() {
  printf '%s\n' "usage: scripts/cloud.sh <plan|deploy|publish|api-key|retire-keys|admin-key|destroy>" \
    "  (or: make plan | make deploy | make publish | make api-key | make admin-key | make destroy)" >&2
  exit 2
}

# -- prerequisites -------------------------------------------------------------------

need_terraform() {
  command -v terraform >/dev/null 2>&1 || die "terraform is not on PATH." \
    "Install Terraform >= $MIN_TERRAFORM: https://developer.hashicorp.com/terraform/install" \
    "(or: brew install hashicorp/tap/terraform; apt-get install terraform from apt.releases.hashicorp.com)," \
    "then run this command again."
  local json
  json="$(terraform version -json 2>/dev/null || true)"
  if [[ "$json" =~ \"terraform_version\"[[:space:]]*:[[:space:]]*\"([0-9]+)\.([0-9]+) ]]; then
    local major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
    if ((major < 1 || (major == 1 && minor < 5))); then
      die "terraform $major.$minor is too old: this project needs >= $MIN_TERRAFORM." \
        "Upgrade: https://developer.hashicorp.com/terraform/install"
    fi
  fi
}

need_gcloud() {
  command -v gcloud >/dev/null 2>&1 || die "gcloud (the Google Cloud CLI) is not on PATH." \
    "Install it: https://cloud.google.com/sdk/docs/install, then run:" \
    "  gcloud auth login" \
    "  gcloud auth application-default login"
  local account
  account="$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null || true)"
  [[ -n "$account" ]] || die "gcloud has no active account." \
    "Log in (opens a browser; add --no-launch-browser on a remote machine):" \
    "  gcloud auth login" \
    "or select one of the accounts listed by 'gcloud auth list':" \
    "  gcloud config set account <email>"
}

# Terraform and the Python clients (publish) use Application Default Credentials,
# which are separate from gcloud's own login.
need_adc() {
  gcloud auth application-default print-access-token >/dev/null 2>&1 || die \
    "no usable Application Default Credentials (Terraform and the trainer need them)." \
    "Create them (separate from 'gcloud auth login'):" \
    "  gcloud auth application-default login" \
    "If they exist but fail, they may have expired: run the same command again."
}

need_tfvars() {
  [[ -f "$TFVARS" ]] || die "${TFVARS#"$ROOT"/} not found." \
    "copy terraform/terraform.tfvars.example to terraform/terraform.tfvars and set project_id:" \
    "  cp terraform/terraform.tfvars.example terraform/terraform.tfvars" \
    "  \$EDITOR terraform/terraform.tfvars   # project_id = \"your-gcp-project\""
  local project
  project="$(tfvars_project)"
  [[ -n "$project" ]] || die "project_id is not set in ${TFVARS#"$ROOT"/}." \
    "Add a line: project_id = \"your-gcp-project\""
  [[ "$project" != "my-gcp-project" ]] || die \
    "project_id in ${TFVARS#"$ROOT"/} is still the example's \"my-gcp-project\"." \
    "Set it to your project id (gcloud projects list shows them)."
}

# The functions: one per Task in velocast.core.tasks (the keys of Terraform's
# var.functions map name the same bundles).
function_names() {
  [[ -x "$PY" ]] || die ".venv is missing: the function list comes from velocast.core.tasks." "Run: make install"
  "$PY" -c 'from velocast.core.tasks import TASK_NAMES; print(" ".join(TASK_NAMES))'
}

# The bundles terraform zips (terraform/storage.tf: "${var.source_dir}/<function>").
bundles_built() {
  local fn
  for fn in $(function_names); do
    [[ -f "$ROOT/build/$fn/main.py" && -f "$ROOT/build/$fn/requirements.txt" ]] || return 1
  done
}

need_bundles() {
  bundles_built || die \
    "a bundle under build/ is missing (one per function: $(function_names)); they are built by" \
    "  make package      (make plan and make deploy run it first)"
}

# What terraform plan / apply / destroy need, in the order they are checked.
need_stack_access() {
  need_terraform
  need_gcloud
  need_adc
  need_tfvars
}

need_venv() {
  [[ -x "$PY" ]] || die ".venv is missing: the trainer runs from it." "Run: make install"
}

# project_id from TFVARS (a plain `project_id = "..."` line), or PROJECT.
tfvars_project() {
  if [[ -n "${PROJECT:-}" ]]; then
    printf '%s' "$PROJECT"
    return
  fi
  [[ -f "$TFVARS" ]] || return 0
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" =~ ^[[:space:]]*project_id[[:space:]]*=[[:space:]]*\"([^\"]*)\" ]]; then
      printf '%s' "${BASH_REMATCH[1]}"
      return
    fi
  done <"$TFVARS"
}

tf() { terraform -chdir="$TF_DIR" "$@"; }

tf_init() { tf init -input=false; }

# A Terraform output of the deployed stack; a clear message when nothing is deployed.
tf_output() {
  local value
  [[ -d "$TF_DIR/.terraform" ]] || tf_init >&2
  if ! value="$(tf output -raw "$1" 2>/dev/null)" || [[ -z "$value" ]]; then
    die "terraform output $1 is empty: nothing is deployed from this checkout yet." \
      "Run: make deploy"
  fi
  printf '%s' "$value"
}

# Terraform asks for "yes" itself unless AUTO_APPROVE=1.
APPROVE=()
[[ "${AUTO_APPROVE:-0}" != 1 ]] || APPROVE=(-auto-approve)

python_for_keys() {
  if [[ -x "$PY" ]]; then printf '%s' "$PY"; else command -v python3 || die "python3 not found."; fi
}

new_key() { "$(python_for_keys)" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

# The latest payload of secret $1 (empty when it has no version yet). Kept in memory.
read_secret() {
  local out err_file rc=0
  err_file="$(mktemp)"
  out="$(gcloud secrets versions access latest --secret="$1" --project="$2" 2>"$err_file")" || rc=$?
  local err
  err="$(<"$err_file")"
  rm -f "$err_file"
  if ((rc != 0)); then
    shopt -s nocasematch
    if [[ "$err" =~ (NOT_FOUND|not\ found|no\ versions|DESTROYED|DISABLED) ]]; then
      shopt -u nocasematch
      return 0
    fi
    shopt -u nocasematch
    die "cannot read secret $1 in project $2:" "$err" \
      "You need roles/secretmanager.secretAccessor and roles/secretmanager.secretVersionAdder" \
      "on it (a project Owner has both)."
  fi
  printf '%s' "$out"
}

# Add a version to secret $1 (project $2) whose payload is stdin.
add_version() {
  gcloud secrets versions add "$1" --project="$2" --data-file=- >/dev/null
}

# -- commands ------------------------------------------------------------------------

cmd_plan() {
  need_stack_access
  need_bundles
  tf_init
  tf plan -input=false -var-file="$TFVARS"
}

cmd_deploy() {
  need_stack_access
  need_bundles
  tf_init
  # No -input=false here: it would also refuse the interactive "yes".
  tf apply -var-file="$TFVARS" "${APPROVE[@]}"
  local urls
  urls="$(tf output -json function_urls 2>/dev/null | "$PY" -c '
import json, sys
for name, url in sorted(json.load(sys.stdin).items()):
    print(f"  {name}: {url}")' 2>/dev/null || true)"
  say "deployed:" "${urls:-  (no URL: terraform output function_urls is empty)}" \
    "next, once: make admin-key; make api-key; make publish" \
    "(until a key and a model exist the functions answer 503)"
}

cmd_destroy() {
  need_stack_access
  # Terraform reads the archive_file data sources even to destroy.
  if ! bundles_built; then
    say "building the function bundles first (terraform reads them even to destroy)"
    "$(python_for_keys)" "$ROOT/scripts/package.py" >&2
  fi
  say "destroying every resource of this deployment (functions, buckets, secrets, accounts)." \
    "Buckets still holding objects are only deleted with force_destroy_buckets = true in tfvars."
  tf_init
  tf destroy -var-file="$TFVARS" "${APPROVE[@]}"
}

# Publishing is `python -m velocast.train.publish` (shared/velocast/train/publish.py): write-once
# copies, registry entries last; with AS_TRAINER=1 as the trainer service account
# through impersonated credentials, otherwise as your ADC identity.
cmd_publish() {
  need_terraform
  need_gcloud
  need_adc
  need_venv
  local bucket store trainer=""
  bucket="$(tf_output models_bucket)"
  store="gs://$bucket"
  if [[ "${AS_TRAINER:-0}" == 1 ]]; then
    trainer="$(tf_output trainer_service_account)"
  fi
  if [[ -n "$FROM" ]]; then
    [[ -d "$FROM" ]] || die "FROM=$FROM is not a folder store." \
      "Point FROM at a folder written by 'make train STORE=<folder>'."
    say "copying the models of $FROM into $store (write-once: existing objects are kept)"
    "$PY" -m velocast.train.publish copy --to "$store" --from "$FROM" --as "$trainer" \
      --project "$(tfvars_project)"
  else
    if [[ ! -f "$DATA" ]]; then
      [[ "$DATA" == "$SAMPLE" ]] || die "DATA=$DATA not found." \
        "Pass the Paris export: make publish DATA=path/to/comptage-velo-donnees-compteurs.csv"
      say "${SAMPLE#"$ROOT"/} missing: generating the synthetic sample"
      "$PY" -m velocast.train.sample --out "$SAMPLE"
    fi
    say "training on $DATA and publishing into $store"
    "$PY" -m velocast.train.publish train --to "$store" --data "$DATA" --models "${MODELS:-}" \
      --as "$trainer" --project "$(tfvars_project)"
  fi
  say "published. The functions pick new models up within REFRESH_SECONDS (default 300 s)," \
    "or at once with: curl -X POST -H \"X-API-Key: \$ADMIN_KEY\" <url>/refresh"
}

cmd_api_key() {
  need_terraform
  need_gcloud
  need_tfvars
  local secret project key current payload count=1
  project="$(tfvars_project)"
  secret="$(tf_output api_keys_secret_id)"
  key="$(new_key)"
  if [[ "${KEEP_ONLY_NEW:-0}" == 1 ]]; then
    payload="$key"
    say "KEEP_ONLY_NEW=1: the new key replaces every existing client key"
  else
    current="$(read_secret "$secret" "$project")"
    payload="$key"
    local line
    while IFS= read -r line || [[ -n "$line" ]]; do
      line="${line//[[:space:]]/}"
      [[ -n "$line" && $'\n'"$payload"$'\n' != *$'\n'"$line"$'\n'* ]] || continue
      payload+=$'\n'"$line"
      count=$((count + 1))
    done <<<"$current"
  fi
  printf '%s\n' "$payload" | add_version "$secret" "$project"
  say "added a version of secret $secret (project $project) holding $count key(s)."
  printf '%s\n' "$key"
  say "^ the new client API key, shown only this once: hand it over now." \
    "Clients send it as 'X-API-Key: <key>' (or 'Authorization: Bearer <key>' on public functions)." \
    "Instances pick it up within SECRET_TTL_SECONDS (default 300 s)."
  if ((count > 1)); then
    say "The $((count - 1)) older key(s) still work. Once clients use the new key, retire the others:" \
      "  scripts/cloud.sh retire-keys     (keeps this newest key only; KEEP=N keeps the N newest)" \
      "or revoke everything at once and hand out a fresh key:" \
      "  KEEP_ONLY_NEW=1 make api-key" \
      "Old keys also stay in the secret's version history; to erase them there too:" \
      "  gcloud secrets versions list $secret --project=$project" \
      "  gcloud secrets versions destroy <version> --secret=$secret --project=$project"
  fi
}

# The end of a rotation: keep the KEEP (default 1) newest client keys, i.e. the ones
# the last `make api-key` runs added (they put their key first). No key is printed.
cmd_retire_keys() {
  need_terraform
  need_gcloud
  need_tfvars
  local secret project current payload="" kept=0 dropped=0 keep="${KEEP:-1}" line
  [[ "$keep" =~ ^[1-9][0-9]*$ ]] || die "KEEP=$keep: expected how many of the newest keys to keep (>= 1)."
  project="$(tfvars_project)"
  secret="$(tf_output api_keys_secret_id)"
  current="$(read_secret "$secret" "$project")"
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line//[[:space:]]/}"
    [[ -n "$line" ]] || continue
    if ((kept < keep)); then
      payload+="${payload:+$'\n'}$line"
      kept=$((kept + 1))
    else
      dropped=$((dropped + 1))
    fi
  done <<<"$current"
  ((kept > 0)) || die "secret $secret holds no key: nothing to retire. Run: make api-key"
  if ((dropped == 0)); then
    say "secret $secret holds $kept key(s), none older than the $keep newest: nothing to retire."
    return 0
  fi
  printf '%s\n' "$payload" | add_version "$secret" "$project"
  say "added a version of secret $secret keeping the $kept newest key(s); $dropped older key(s)" \
    "stop working within SECRET_TTL_SECONDS (default 300 s)." \
    "Undo: gcloud secrets versions access <previous version> --secret=$secret --project=$project \\" \
    "        | gcloud secrets versions add $secret --project=$project --data-file=-"
}

cmd_admin_key() {
  need_terraform
  need_gcloud
  need_tfvars
  local secret project key
  project="$(tfvars_project)"
  secret="$(tf_output admin_key_secret_id)"
  key="$(new_key)"
  printf '%s\n' "$key" | add_version "$secret" "$project"
  say "added a version of secret $secret (project $project); the previous admin key stops" \
    "working within SECRET_TTL_SECONDS (default 300 s)."
  printf '%s\n' "$key"
  say "^ the admin key (POST /refresh), shown only this once: store it in a password manager."
}

main() {
  (($# == 1)) || usage
  case "$1" in
    plan) cmd_plan ;;
    deploy) cmd_deploy ;;
    publish) cmd_publish ;;
    api-key) cmd_api_key ;;
    admin-key) cmd_admin_key ;;
    retire-keys) cmd_retire_keys ;;
    destroy) cmd_destroy ;;
    -h | --help | help) usage ;;
    *)
      say "unknown command: $1"
      usage
      ;;
  esac
}

main "$@"
