locals {
  # One entry per function; every per-function resource (bundle, source
  # object, function, runtime service account, grants, invokers) is a
  # for_each over this map, keyed by the function name. The key is also the
  # bundle folder under var.source_dir and the suffix of the resource names.
  functions = {
    classify = {
      description = "velocast: is traffic at a Paris bike counter above its usual level (affluence classifier)"
      runtime     = "python312"
      entry_point = "classify"
      memory      = var.classify_memory
    }
    regress = {
      description = "velocast: hourly bike count predicted for a Paris counter (regression models)"
      runtime     = "python312"
      entry_point = "regress"
      memory      = var.regress_memory
    }
  }

  # Everything the functions need to find their dependencies. Secret *names*
  # only: the code reads the values at run time through Secret Manager and
  # caches them with a TTL, so a key rotation needs no redeploy (a secret env
  # var would be frozen per instance).
  function_env = {
    MODEL_STORE      = "gs://${google_storage_bucket.models.name}"
    GCP_PROJECT      = var.project_id
    API_KEYS_SECRET  = google_secret_manager_secret.api_keys.secret_id
    ADMIN_KEY_SECRET = google_secret_manager_secret.admin_key.secret_id
    REFRESH_SECONDS  = tostring(var.refresh_seconds)
    MAX_RECORDS      = tostring(var.max_records)
    LOG_LEVEL        = var.log_level
    # The forecast page (GET /app) calls classify here: the cloudfunctions.net URL is
    # shared by both functions, so a page opened there needs no CORS at all.
    CLASSIFY_URL    = "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}-classify"
    ALLOWED_ORIGINS = join(",", var.page_origins)
  }

  # Cloud Run's CPU/memory envelope, checked at plan time rather than as an
  # API error halfway through an apply.
  memory_mib = {
    "128Mi" = 128
    "256Mi" = 256
    "512Mi" = 512
    "1Gi"   = 1024
    "2Gi"   = 2048
    "4Gi"   = 4096
    "8Gi"   = 8192
    "16Gi"  = 16384
    "32Gi"  = 32768
  }
  cpu            = tonumber(var.available_cpu)
  max_memory_mib = local.cpu < 0.5 ? 512 : (local.cpu < 1 ? 1024 : local.cpu * 4096)
  min_memory_mib = local.cpu >= 6 ? 4096 : (local.cpu >= 4 ? 2048 : 128)

  build_service_account = "projects/${var.project_id}/serviceAccounts/${google_service_account.build.email}"
}

resource "google_cloudfunctions2_function" "fn" {
  #checkov:skip=CKV_GCP_124:Ingress is var.ingress_settings. ALLOW_ALL is the default on purpose: callers (people, CI, BigQuery remote functions) are outside any VPC, and access is enforced by IAM (roles/run.invoker, allUsers only when var.public) plus API keys in the app.
  for_each = local.functions

  project     = var.project_id
  name        = "${var.name_prefix}-${each.key}"
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = each.value.runtime
    entry_point       = each.value.entry_point
    service_account   = local.build_service_account
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle[each.key].name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = var.available_cpu
    min_instance_count               = var.min_instances
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = var.concurrency
    timeout_seconds                  = var.timeout_seconds
    ingress_settings                 = var.ingress_settings
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.fn[each.key].email
    environment_variables            = local.function_env
  }

  lifecycle {
    precondition {
      condition     = local.memory_mib[each.value.memory] <= local.max_memory_mib && local.memory_mib[each.value.memory] >= local.min_memory_mib
      error_message = "${each.key}_memory ${each.value.memory} does not fit available_cpu ${var.available_cpu}: Cloud Run allows ${local.min_memory_mib}-${local.max_memory_mib} MiB for that CPU."
    }
    precondition {
      condition     = var.concurrency == 1 || local.cpu >= 1
      error_message = "concurrency > 1 needs available_cpu >= 1."
    }
    precondition {
      condition     = var.min_instances <= var.max_instances
      error_message = "min_instances must not exceed max_instances."
    }
  }

  # The first build fails, and instances crash on their first model load, if
  # the APIs or grants are not in place yet. (depends_on takes whole
  # resources, so each function waits for every function's runtime grants.)
  depends_on = [
    google_project_service.this,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_gcf_sources_reader,
    google_storage_bucket_iam_member.build_sources_reader,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.fn_models_reader,
    google_secret_manager_secret_iam_member.fn_secret_accessor,
  ]
}
