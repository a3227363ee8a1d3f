# A repository of our own for the function images, instead of the gcf-artifacts
# one Cloud Functions creates on first deploy: it exists before the first build,
# so the build service account can be granted write access on this repository
# alone (iam.tf), and its cleanup policies stop images piling up forever.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Images hold only the function code and its pinned open-source dependencies (no models, data or keys); the stack uses Google-managed encryption throughout, and a CMEK key for this repository alone would add key management and a new failure mode (a disabled key stops builds and cold starts) without protecting anything sensitive.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  description   = "Container images built by Cloud Build for the velocast functions"
  format        = "DOCKER"

  cleanup_policy_dry_run = false

  # A keep policy wins over a delete policy, so the latest images (the running
  # revision and a few rollback targets) survive however old they are.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.this]
}
