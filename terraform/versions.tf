terraform {
  # Validation blocks only reference their own variable and cross-variable rules
  # live in lifecycle preconditions, so nothing here needs more than 1.5.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.41 is the oldest release whose google_cloudfunctions2_function and
      # google_storage_bucket schemas match what this configuration sets.
      version = ">= 6.41, < 8"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.5"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  # Labels let billing reports and `gcloud ... --filter` isolate this deployment.
  default_labels = local.labels
}
