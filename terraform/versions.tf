terraform {
  # Validations reference only their own variable (cross-variable rules are
  # lifecycle preconditions), so 1.5 is enough.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Argument names were checked against the 6.x/7.x docs; a new major
      # version may rename or drop them, hence the upper bound.
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
