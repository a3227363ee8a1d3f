# The daily retrain in the cloud: a Cloud Run job running the trainer image
# (Dockerfile at the repository root, pushed by `make trainer-image`), started
# by Cloud Scheduler. The job ingests the Paris export into the data bucket,
# fits challengers, and publishes/promotes into the models bucket, which the
# functions re-read every REFRESH_SECONDS: no redeploy.
#
# Cost at rest: the job and the scheduler cost nothing between runs (Cloud
# Scheduler: 3 free jobs per billing account); the data bucket holds ~30 MB
# of gzip day partitions for 13 months (cents per month); the image
# repository keeps 3 images of ~700 MB. A run is billed per vCPU- and
# GiB-second while it runs (see README, "Daily loop").

variable "trainer_schedule" {
  description = "When the retrain job runs, as a unix-cron expression in trainer_time_zone. Default: every day at 05:30, after the portal's nightly update."
  type        = string
  default     = "30 5 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.trainer_schedule))) == 5
    error_message = "trainer_schedule must be a 5-field unix-cron expression, e.g. \"30 5 * * *\"."
  }
}

variable "trainer_time_zone" {
  description = "Time zone (tz database name) of trainer_schedule."
  type        = string
  default     = "Europe/Paris"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z_+-]+)*$", var.trainer_time_zone))
    error_message = "trainer_time_zone must be a tz database name such as Europe/Paris or UTC."
  }
}

variable "trainer_image_tag" {
  description = "Tag of the trainer image in the trainer repository, as pushed by `make trainer-image TAG=...`."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.trainer_image_tag))
    error_message = "trainer_image_tag must be a valid Docker tag (letters, digits, _ . -; at most 128 chars)."
  }
}

variable "trainer_resources" {
  description = "CPU and memory limits of the retrain job's container (Cloud Run: cpu \"1\", \"2\", \"4\", \"8\"; memory such as \"4Gi\"). The default fits 13 months of counts with every model type (see README for the measured peak)."
  type = object({
    cpu    = string
    memory = string
  })
  default = { cpu = "2", memory = "4Gi" }

  validation {
    condition     = contains(["1", "2", "4", "8"], var.trainer_resources.cpu) && can(regex("^[0-9]+(Mi|Gi)$", var.trainer_resources.memory))
    error_message = "trainer_resources.cpu must be 1, 2, 4 or 8 and memory a size such as 4Gi or 2048Mi."
  }
}

variable "trainer_timeout_seconds" {
  description = "Longest a retrain attempt may run before Cloud Run stops it."
  type        = number
  default     = 3600

  validation {
    condition     = var.trainer_timeout_seconds >= 300 && var.trainer_timeout_seconds <= 86400 && floor(var.trainer_timeout_seconds) == var.trainer_timeout_seconds
    error_message = "trainer_timeout_seconds must be a whole number between 300 and 86400."
  }
}

variable "portal_url" {
  description = "Base URL of the Paris open-data portal (Explore API v2.1) the job ingests from."
  type        = string
  default     = "https://opendata.paris.fr"

  validation {
    condition     = can(regex("^https://[^/\\s]+$", var.portal_url))
    error_message = "portal_url must be an https:// base URL without a path, e.g. https://opendata.paris.fr."
  }
}

locals {
  data_bucket_name = "${var.project_id}-${var.name_prefix}-data"
  trainer_image    = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.trainer.repository_id}/trainer:${var.trainer_image_tag}"
}

resource "google_project_service" "scheduler" {
  project            = var.project_id
  service            = "cloudscheduler.googleapis.com"
  disable_on_destroy = false
}

# Ingested counts: write-once day objects and manifests (velocast.train.counts),
# so like the models bucket it needs versioning only as a safety net.
resource "google_storage_bucket" "data" {
  project       = var.project_id
  name          = local.data_bucket_name
  location      = var.region
  storage_class = "STANDARD"
  force_destroy = var.force_destroy_buckets

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = local.soft_delete_seconds
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "logging" {
    for_each = var.access_logs ? [1] : []
    content {
      log_bucket        = google_storage_bucket.access_logs[0].name
      log_object_prefix = "data"
    }
  }

  depends_on = [google_project_service.this]
}

# Read and create, never replace or delete: every object the trainer writes is
# write-once (if_generation_match=0), so it needs no more on either bucket.
resource "google_storage_bucket_iam_member" "trainer_data" {
  for_each = toset(["roles/storage.objectCreator", "roles/storage.objectViewer"])

  bucket = google_storage_bucket.data.name
  role   = each.value
  member = google_service_account.trainer.member
}

resource "google_artifact_registry_repository" "trainer" {
  #checkov:skip=CKV_GCP_84:The trainer image holds open-source code and pinned dependencies only (no data, models or keys); Google-managed encryption as for the functions repository, without a key whose disabling would stop the daily job.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-trainer"
  description   = "The velocast trainer image run by the daily retrain job"
  format        = "DOCKER"

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 3
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

# `make trainer-image` builds with the build service account (gcloud builds
# submit --service-account): it may push to this repository only.
resource "google_artifact_registry_repository_iam_member" "build_trainer_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.trainer.location
  repository = google_artifact_registry_repository.trainer.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

resource "google_cloud_run_v2_job" "retrain" {
  project             = var.project_id
  name                = "${var.name_prefix}-retrain"
  location            = var.region
  deletion_protection = false

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.trainer.email
      timeout         = "${var.trainer_timeout_seconds}s"
      # A failed run is retried once; the next day's run fetches what it missed.
      max_retries = 1

      containers {
        image = local.trainer_image
        args = [
          "--store", "gs://${google_storage_bucket.models.name}",
          "--counts-store", "gs://${google_storage_bucket.data.name}",
          "--source", var.portal_url,
        ]
        resources {
          limits = {
            cpu    = var.trainer_resources.cpu
            memory = var.trainer_resources.memory
          }
        }
      }
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "velocast retrain scheduler"
  description  = "Starts the retrain job; may run that job and nothing else."

  depends_on = [google_project_service.this]
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_retrain" {
  project  = var.project_id
  location = google_cloud_run_v2_job.retrain.location
  name     = google_cloud_run_v2_job.retrain.name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

resource "google_cloud_scheduler_job" "retrain" {
  project          = var.project_id
  name             = "${var.name_prefix}-retrain-daily"
  region           = var.region
  description      = "Starts the velocast retrain job (ingest, challenge, promote)"
  schedule         = var.trainer_schedule
  time_zone        = var.trainer_time_zone
  attempt_deadline = "60s"

  retry_config {
    retry_count = 2
  }

  http_target {
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.retrain.name}:run"
    http_method = "POST"

    oauth_token {
      service_account_email = google_service_account.scheduler.email
    }
  }

  depends_on = [google_project_service.scheduler, google_cloud_run_v2_job_iam_member.scheduler_runs_retrain]
}

output "data_bucket" {
  description = "Bucket holding the ingested counts (the retrain job's --counts-store)."
  value       = google_storage_bucket.data.name
}

output "trainer_image" {
  description = "Image the retrain job runs; push it with `make trainer-image`."
  value       = local.trainer_image
}

output "retrain_job" {
  description = "Cloud Run job of the daily retrain; run it now with `gcloud run jobs execute`."
  value       = google_cloud_run_v2_job.retrain.name
}
