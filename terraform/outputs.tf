output "function_urls" {
  description = "HTTPS endpoint of each function, keyed by function name (POST /, /predict; GET /health, /models; POST /refresh). `terraform output -json function_urls`."
  value       = { for name, fn in google_cloudfunctions2_function.fn : name => fn.url }
}

output "models_bucket" {
  description = "Name of the models bucket (the model store and registry)."
  value       = google_storage_bucket.models.name
}

output "model_store_uri" {
  description = "Model store URI the functions read (MODEL_STORE) and the trainer publishes to."
  value       = local.function_env.MODEL_STORE
}

output "source_bucket" {
  description = "Name of the bucket holding the function source zips."
  value       = google_storage_bucket.sources.name
}

output "access_logs_bucket" {
  description = "Name of the bucket receiving GCS usage logs for the models and sources buckets (null when access_logs = false)."
  value       = var.access_logs ? google_storage_bucket.access_logs[0].name : null
}

output "artifact_repository" {
  description = "Artifact Registry repository holding the function images."
  value       = google_artifact_registry_repository.functions.id
}

output "function_service_accounts" {
  description = "Email of each function's runtime service account, keyed by function name."
  value       = { for name, sa in google_service_account.fn : name => sa.email }
}

output "trainer_service_account" {
  description = "Email of the trainer service account, to impersonate when publishing models (gcloud --impersonate-service-account, or GOOGLE_IMPERSONATE_SERVICE_ACCOUNT)."
  value       = google_service_account.trainer.email
}

output "build_service_account" {
  description = "Email of the service account Cloud Build uses to build the function images."
  value       = google_service_account.build.email
}

output "api_keys_secret_id" {
  description = "Secret Manager id of the client API keys (one key per line in the latest version)."
  value       = google_secret_manager_secret.api_keys.secret_id
}

output "admin_key_secret_id" {
  description = "Secret Manager id of the admin key (POST /refresh)."
  value       = google_secret_manager_secret.admin_key.secret_id
}
