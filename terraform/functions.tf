locals {
  # var.functions with its defaults resolved, plus the CPU/memory envelope of
  # each entry. Every per-function resource (bundle, source object, function,
  # runtime service account, grants, invokers) is a for_each over this map,
  # keyed by the function name: adding a function is one entry in
  # var.functions, nothing here.
  functions = {
    for name, fn in var.functions : name => merge(fn, {
      entry_point = coalesce(fn.entry_point, name)
      memory_mib  = local.memory_mib[fn.memory]
      # Cloud Run's CPU/memory table, checked at plan time (preconditions
      # below) rather than as an API error halfway through an apply.
      max_memory_mib = tonumber(fn.cpu) < 0.5 ? 512 : (tonumber(fn.cpu) < 1 ? 1024 : tonumber(fn.cpu) * 4096)
      min_memory_mib = tonumber(fn.cpu) >= 6 ? 4096 : (tonumber(fn.cpu) >= 4 ? 2048 : 128)
    })
  }

  # The two secrets every function mounts as files. A mounted secret at version
  # "latest" is fetched from Secret Manager on each read of the file (Cloud Run
  # docs, "Configure secrets"), so a key rotation reaches running instances
  # within the code's TTL (SECRET_TTL_SECONDS) with no redeploy and no client
  # library; a secret env var would be frozen per instance. Each secret gets its
  # own mount path: a mount shadows its whole folder.
  secret_files = {
    api_keys = {
      secret     = google_secret_manager_secret.api_keys.secret_id
      mount_path = "/etc/secrets/api-keys"
      path       = "keys"
    }
    admin_key = {
      secret     = google_secret_manager_secret.admin_key.secret_id
      mount_path = "/etc/secrets/admin-key"
      path       = "key"
    }
  }

  # Everything the functions need to find their dependencies; for the keys,
  # where the mounted files are.
  function_env = {
    MODEL_STORE     = "gs://${google_storage_bucket.models.name}"
    COUNTS_STORE    = "gs://${google_storage_bucket.data.name}"
    GCP_PROJECT     = var.project_id
    API_KEYS_FILE   = "${local.secret_files.api_keys.mount_path}/${local.secret_files.api_keys.path}"
    ADMIN_KEY_FILE  = "${local.secret_files.admin_key.mount_path}/${local.secret_files.admin_key.path}"
    REFRESH_SECONDS = tostring(var.refresh_seconds)
    # A BigQuery batch is one request: it must fit (bigquery.tf).
    MAX_RECORDS = tostring(var.bigquery ? max(var.max_records, var.bigquery_max_batching_rows) : var.max_records)
    LOG_LEVEL   = var.log_level
    # The forecast page (GET /app) calls classify here: the cloudfunctions.net URL is
    # shared by both functions, so a page opened there needs no CORS at all.
    CLASSIFY_URL    = "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}-classify"
    ALLOWED_ORIGINS = join(",", var.page_origins)
  }

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
    available_cpu                    = each.value.cpu
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    timeout_seconds                  = each.value.timeout_seconds
    ingress_settings                 = var.ingress_settings
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.fn[each.key].email
    # THREADS: functions-framework's gunicorn threads (default 4 per CPU), one per
    # request Cloud Run may send at once, so none waits unseen in gunicorn's queue
    # (bench/README.md, "Batch throughput").
    environment_variables = merge(local.function_env, { THREADS = tostring(each.value.concurrency) })

    dynamic "secret_volumes" {
      for_each = local.secret_files
      content {
        mount_path = secret_volumes.value.mount_path
        project_id = var.project_id
        secret     = secret_volumes.value.secret
        versions {
          version = "latest"
          path    = secret_volumes.value.path
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = each.value.memory_mib <= each.value.max_memory_mib && each.value.memory_mib >= each.value.min_memory_mib
      error_message = "functions.${each.key}.memory ${each.value.memory} does not fit its cpu ${each.value.cpu}: Cloud Run allows ${each.value.min_memory_mib}-${each.value.max_memory_mib} MiB for that CPU."
    }
    precondition {
      condition     = each.value.concurrency == 1 || tonumber(each.value.cpu) >= 1
      error_message = "functions.${each.key}: concurrency > 1 needs cpu >= 1."
    }
    precondition {
      condition     = each.value.min_instances <= each.value.max_instances
      error_message = "functions.${each.key}: min_instances must not exceed max_instances."
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
    google_storage_bucket_iam_member.fn_counts_reader,
    google_secret_manager_secret_iam_member.fn_secret_accessor,
  ]
}
