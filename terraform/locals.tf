# The project number is only needed to name the bucket Google creates for
# function sources (see iam.tf); reading it keeps users from having to supply it.
data "google_project" "this" {
  project_id = var.project_id
}

locals {
  labels = {
    app        = "velocast"
    managed-by = "terraform"
    deployment = var.name_prefix
  }

  # Bucket names are global across all of GCS, so the project id is part of them.
  # Lengths: project_id <= 30 + "-" + name_prefix <= 20 + "-access-logs" = 63, the GCS limit.
  models_bucket_name      = coalesce(var.models_bucket_name, "${var.project_id}-${var.name_prefix}-models")
  sources_bucket_name     = "${var.project_id}-${var.name_prefix}-sources"
  access_logs_bucket_name = "${var.project_id}-${var.name_prefix}-access-logs"

  soft_delete_seconds = var.soft_delete_days * 86400
}
