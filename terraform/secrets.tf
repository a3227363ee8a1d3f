# Only the secret containers live here. Values are added as secret versions
# outside Terraform (`make api-key`), so no key ever lands in Terraform state
# or plan output.
#
# Rotation: add a new version holding the new and the old keys, one per line;
# once clients have switched, add a version with only the new key. Functions
# mount `latest` as a file and re-read it on a TTL (functions.tf), so no
# redeploy is needed.

resource "google_secret_manager_secret" "api_keys" {
  project   = var.project_id
  secret_id = "${var.name_prefix}-api-keys"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

# Separate from the client keys so that handing a key to a client never grants
# the right to force model reloads (POST /refresh).
resource "google_secret_manager_secret" "admin_key" {
  project   = var.project_id
  secret_id = "${var.name_prefix}-admin-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}
