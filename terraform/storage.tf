# Three buckets, all private with uniform IAM (no object ACLs to audit) and
# public access prevention enforced, so no later IAM change can expose them:
#   models      - the model store and registry read by both functions
#   sources     - function source zips uploaded by Terraform
#   access_logs - GCS usage logs of the other two

resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:This is the usage-log sink of the other buckets; a log bucket logging into itself would record only its own log deliveries.
  count = var.access_logs ? 1 : 0

  project       = var.project_id
  name          = local.access_logs_bucket_name
  location      = var.region
  storage_class = "STANDARD"
  force_destroy = var.force_destroy_buckets

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Log objects are never rewritten; versioning only means a deleted log
  # stays recoverable for a week, which makes tampering visible.
  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = local.soft_delete_seconds
  }

  lifecycle_rule {
    condition {
      age = var.access_log_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# GCS writes usage logs as this Google-owned group; with uniform access the
# grant has to be IAM, and objectCreator cannot read or delete anything.
resource "google_storage_bucket_iam_member" "access_logs_writer" {
  count = var.access_logs ? 1 : 0

  bucket = google_storage_bucket.access_logs[0].name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

resource "google_storage_bucket" "models" {
  project       = var.project_id
  name          = local.models_bucket_name
  location      = var.region
  storage_class = "STANDARD"
  force_destroy = var.force_destroy_buckets

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Published models are write-once; versioning is the safety net for the
  # only ways they can disappear (an admin delete, or a lifecycle mistake).
  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = local.soft_delete_seconds
  }

  # Bound the cost of that safety net: keep a few noncurrent versions, and
  # none of them forever. Live versions have no newer version, so these rules
  # never touch a published model.
  lifecycle_rule {
    condition {
      num_newer_versions = var.noncurrent_versions_to_keep
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
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
      log_object_prefix = "models"
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_storage_bucket" "sources" {
  project       = var.project_id
  name          = local.sources_bucket_name
  location      = var.region
  storage_class = "STANDARD"
  # Source zips are reproducible from git, so they never block a destroy.
  force_destroy = true

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = local.soft_delete_seconds
  }

  # Cloud Functions copies the zip into its own gcf-v2-sources bucket at
  # deploy time, so old zips here are history only. If the live zip ages out,
  # the next apply re-uploads it under the same hash name: no redeploy.
  lifecycle_rule {
    condition {
      age = var.source_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
    }
    action {
      type = "Delete"
    }
  }

  dynamic "logging" {
    for_each = var.access_logs ? [1] : []
    content {
      log_bucket        = google_storage_bucket.access_logs[0].name
      log_object_prefix = "sources"
    }
  }

  depends_on = [google_project_service.this]
}

# ---------------------------------------------------------------------------
# Function bundles
# ---------------------------------------------------------------------------

# Zip entries get a fixed timestamp and mode, so the hash changes only when a
# file's content does; caches left by local runs are excluded for the same reason.
data "archive_file" "bundle" {
  for_each = local.functions

  type             = "zip"
  source_dir       = "${var.source_dir}/${each.key}"
  output_path      = "${path.module}/.bundles/${each.key}.zip"
  output_file_mode = "0644"
  excludes         = ["**/__pycache__", "**/__pycache__/**", "**/*.pyc"]
}

# The object name carries the zip's hash: Cloud Functions only rebuilds when
# the source reference changes, so new bytes under an old name would never deploy.
resource "google_storage_bucket_object" "bundle" {
  for_each = local.functions

  name         = "${each.key}-${data.archive_file.bundle[each.key].output_md5}.zip"
  bucket       = google_storage_bucket.sources.name
  source       = data.archive_file.bundle[each.key].output_path
  content_type = "application/zip"
}
