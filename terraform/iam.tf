# One identity per job, each holding only resource-level grants. No runtime
# account (classify, regress, trainer) has a project-level role, and no
# service-account key exists: functions run as their account, people
# impersonate the trainer.

# ---------------------------------------------------------------------------
# Service accounts
# ---------------------------------------------------------------------------

resource "google_service_account" "fn" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "velocast ${each.key} function"
  description  = "Runtime identity of the ${each.key} function: reads models, ingested counts and API-key secrets."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "trainer" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-trainer"
  display_name = "velocast trainer"
  description  = "Publishes models to the registry: may create objects, never overwrite or delete them."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "velocast function builds"
  description  = "Cloud Build identity for building the function images."

  depends_on = [google_project_service.this]
}

# ---------------------------------------------------------------------------
# Function runtime: read models, read the ingested counts, read the two secrets.
# Nothing else.
# ---------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "fn_models_reader" {
  for_each = local.functions

  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.fn[each.key].member
}

# GET /counts (the forecast page's measured hours) reads the ingested counts:
# the data bucket's counts/ objects only, never the rest of it. Object reads are
# checked against the object's name; a list is checked against the bucket, so the
# condition also admits a list whose prefix is inside counts/ (the
# storage.googleapis.com/objectListPrefix attribute of IAM Conditions).
resource "google_storage_bucket_iam_member" "fn_counts_reader" {
  for_each = local.functions

  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.fn[each.key].member

  condition {
    title       = "counts-only"
    description = "Only the ingested counts (counts/ prefix) of the data bucket."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.data.name}/objects/counts/\") || api.getAttribute(\"storage.googleapis.com/objectListPrefix\", \"\").startsWith(\"counts/\")"
  }
}

# Every function checks client keys and the admin key (POST /refresh): one
# binding per (function, secret), keyed "<function>/<secret>".
resource "google_secret_manager_secret_iam_member" "fn_secret_accessor" {
  for_each = {
    for pair in setproduct(keys(local.functions), ["api_keys", "admin_key"]) :
    "${pair[0]}/${pair[1]}" => {
      function = pair[0]
      secret_id = {
        api_keys  = google_secret_manager_secret.api_keys.secret_id
        admin_key = google_secret_manager_secret.admin_key.secret_id
      }[pair[1]]
    }
  }

  project   = var.project_id
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn[each.value.function].member
}

# ---------------------------------------------------------------------------
# Trainer: the registry is write-once. objectCreator can create new objects
# but not replace or delete existing ones (that needs storage.objects.delete),
# so a published model or registry entry cannot be clobbered, even by a bug.
# ---------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "trainer_models" {
  for_each = toset(["roles/storage.objectCreator", "roles/storage.objectViewer"])

  bucket = google_storage_bucket.models.name
  role   = each.value
  member = google_service_account.trainer.member
}

# Impersonation instead of key files: listed people or CI accounts get
# short-lived tokens for the trainer (gcloud --impersonate-service-account).
resource "google_service_account_iam_member" "trainer_impersonators" {
  for_each = toset(var.trainer_members)

  service_account_id = google_service_account.trainer.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

# ---------------------------------------------------------------------------
# Build service account. Project-level roles are confined to this account and
# used only where Google offers no narrower resource to bind on.
# ---------------------------------------------------------------------------

# Build logs: writing log entries (logging.logEntries.create) is granted on the
# project only; Cloud Logging has no per-log or per-bucket binding for writers.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# Cloud Functions copies our zip into gcf-v2-sources-<project number>-<region>,
# a bucket it creates itself during the first deploy, and the build reads from
# there. The bucket does not exist before that deploy, so a bucket-level
# binding cannot be made in advance; the IAM condition narrows this
# project-level grant to that one bucket.
resource "google_project_iam_member" "build_gcf_sources_reader" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources-only"
    description = "Only the bucket Cloud Functions copies function sources into."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

resource "google_storage_bucket_iam_member" "build_sources_reader" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# ---------------------------------------------------------------------------
# Invokers. A 2nd-gen function is served by the Cloud Run service of the same
# name, so invocation is roles/run.invoker on that service.
# allUsers is only ever granted through var.public.
# ---------------------------------------------------------------------------

# One binding per (function, member), keyed "<function>/<member>".
resource "google_cloud_run_v2_service_iam_member" "fn_invoker" {
  for_each = {
    for pair in setproduct(keys(local.functions), toset(var.public ? ["allUsers"] : var.invoker_members)) :
    "${pair[0]}/${pair[1]}" => { function = pair[0], member = pair[1] }
  }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}
