resource "google_project_service" "this" {
  for_each = toset([
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    # Project-level IAM bindings and the google_project data source go through this API.
    "cloudresourcemanager.googleapis.com",
    # Impersonating the trainer service account (no key files) mints tokens here.
    "iamcredentials.googleapis.com",
  ])

  project = var.project_id
  service = each.value

  # Other workloads in the same project may rely on these APIs; destroying this
  # stack must not switch them off under their feet.
  disable_on_destroy = false
}
