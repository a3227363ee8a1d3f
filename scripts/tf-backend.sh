#!/usr/bin/env bash
# Point Terraform at the shared state bucket: writes terraform/backend.tf
# (git-ignored: each fork has its own bucket), used by scripts/bootstrap-github.sh
# and by .github/workflows/deploy.yml so that both share one state.
#
#   scripts/tf-backend.sh BUCKET
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bucket="${1:-}"
if [[ ! "$bucket" =~ ^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$ ]]; then
  echo "tf-backend.sh: '$bucket' is not a bucket name (3-63 chars: a-z 0-9 _ -)." >&2
  echo "usage: scripts/tf-backend.sh BUCKET   (the state bucket made by scripts/bootstrap-github.sh)" >&2
  exit 2
fi
cat >"$ROOT/terraform/backend.tf" <<HCL
# Written by scripts/tf-backend.sh: the state lives in gs://$bucket/velocast.
terraform {
  backend "gcs" {
    bucket = "$bucket"
    prefix = "velocast"
  }
}
HCL
echo "tf-backend.sh: terraform/backend.tf now points at gs://$bucket/velocast" >&2
