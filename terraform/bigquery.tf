# Scoring inside BigQuery (var.bigquery): remote functions over both Cloud
# Functions. BigQuery batches the rows of a query (at most max_batching_rows
# per request), calls the function URLs in parallel through a CLOUD_RESOURCE
# connection, retries 429/5xx, and Cloud Run scales the functions to the
# query. The request/reply protocol is shared/velocast/serving/protocols.py; the
# routines' SQL signatures are checked against it by
# tests/unit/test_bigquery_terraform.py.

variable "bigquery" {
  description = "Create a BigQuery dataset, a CLOUD_RESOURCE connection, roles/run.invoker for that connection on both functions, and remote functions (predict_count, busy_probability, is_busy) that score rows from SQL."
  type        = bool
  default     = false
}

variable "bigquery_dataset_id" {
  description = "Dataset holding the remote functions (SQL: `<project>.<dataset>.predict_count(...)`)."
  type        = string
  default     = "velocast"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]{0,1023}$", var.bigquery_dataset_id))
    error_message = "bigquery_dataset_id must be letters, digits and underscores (at most 1024), not starting with a digit."
  }
}

variable "bigquery_location" {
  description = "Location of the dataset and connection; a query can only call functions of its own location, so use the location of the tables you join with (e.g. EU). null (default) uses var.region."
  type        = string
  default     = null

  validation {
    condition     = var.bigquery_location == null ? true : can(regex("^(US|EU|[a-z]+-[a-z]+[0-9]+)$", var.bigquery_location))
    error_message = "bigquery_location must be US, EU or a region such as europe-west1."
  }
}

variable "bigquery_max_batching_rows" {
  description = "Rows per request BigQuery sends to a function (max_batching_rows). 5000 keeps a request near 0.4 MB in and 40 KB out, about 70 ms of one vCPU for gbdt (bench/README.md, batch throughput); the functions' MAX_RECORDS is raised to at least this."
  type        = number
  default     = 5000

  validation {
    condition     = var.bigquery_max_batching_rows >= 1 && var.bigquery_max_batching_rows <= 50000 && floor(var.bigquery_max_batching_rows) == var.bigquery_max_batching_rows
    error_message = "bigquery_max_batching_rows must be a whole number between 1 and 50000 (the functions' largest MAX_RECORDS)."
  }
}

variable "bigquery_api_key" {
  description = "Client key the remote functions send as userDefinedContext.api_key (BigQuery cannot add our header). Required when bigquery = true: add the same value as a line of the API-keys secret. It is readable by whoever can read the routines' metadata and is kept in the Terraform state, so use a key dedicated to BigQuery and rotate it alone."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.bigquery_api_key == null ? true : can(regex("^[!-~]{16,200}$", var.bigquery_api_key))
    error_message = "bigquery_api_key must be 16-200 printable ASCII characters without spaces."
  }
}

locals {
  bigquery_location = coalesce(var.bigquery_location, var.region)

  # The SQL signature every velocast routine declares (protocols.BIGQUERY_ARGUMENTS).
  bigquery_arguments = [
    { name = "counter", type = "STRING" },
    { name = "ts", type = "TIMESTAMP" },
    { name = "lat", type = "FLOAT64" },
    { name = "lon", type = "FLOAT64" },
  ]

  # One routine per (function, reply kind); `output` picks the reply
  # (velocast.core.tasks.Kind.outputs) and must agree with return_type.
  bigquery_routines = {
    predict_count = {
      function    = "regress"
      return_type = "FLOAT64"
      output      = "count"
      description = "Hourly bike count predicted at a Paris counter (velocast regress, default model). NULL when the row cannot be scored: a NULL argument, an unknown counter without coordinates near Paris."
    }
    busy_probability = {
      function    = "classify"
      return_type = "FLOAT64"
      output      = "probability"
      description = "Probability that traffic at a Paris counter is above its usual level at that hour (velocast classify). NULL when the row cannot be scored."
    }
    is_busy = {
      function    = "classify"
      return_type = "BOOL"
      output      = "busy"
      description = "Whether traffic at a Paris counter is above its usual level at that hour (probability >= 0.5, velocast classify). NULL when the row cannot be scored."
    }
  }
}

resource "google_project_service" "bigquery" {
  for_each = var.bigquery ? toset(["bigquery.googleapis.com", "bigqueryconnection.googleapis.com"]) : toset([])

  project = var.project_id
  service = each.value

  # Other workloads in the project may use BigQuery: never switch it off.
  disable_on_destroy = false
}

resource "google_bigquery_dataset" "velocast" {
  #checkov:skip=CKV_GCP_81:The dataset holds routines only (no table, no data at rest); a customer-managed key would protect nothing and add a KMS key ring to run.
  count = var.bigquery ? 1 : 0

  project     = var.project_id
  dataset_id  = var.bigquery_dataset_id
  location    = local.bigquery_location
  description = "velocast remote functions: score Paris bike counters from SQL."

  depends_on = [google_project_service.bigquery]
}

resource "google_bigquery_connection" "functions" {
  count = var.bigquery ? 1 : 0

  project       = var.project_id
  connection_id = "${var.name_prefix}-functions"
  location      = local.bigquery_location
  friendly_name = "velocast functions"
  description   = "Calls the velocast Cloud Functions for the remote functions in dataset ${var.bigquery_dataset_id}."

  cloud_resource {}

  depends_on = [google_project_service.bigquery]
}

# The connection's Google-managed account may invoke both functions, and
# nothing else: no project role, no other service.
resource "google_cloud_run_v2_service_iam_member" "bigquery_invoker" {
  for_each = var.bigquery ? local.functions : {}

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_bigquery_connection.functions[0].cloud_resource[0].service_account_id}"
}

resource "google_bigquery_routine" "remote" {
  for_each = var.bigquery ? local.bigquery_routines : {}

  project         = var.project_id
  dataset_id      = google_bigquery_dataset.velocast[0].dataset_id
  routine_id      = each.key
  routine_type    = "SCALAR_FUNCTION"
  definition_body = ""
  description     = each.value.description

  dynamic "arguments" {
    for_each = local.bigquery_arguments
    content {
      name      = arguments.value.name
      data_type = jsonencode({ typeKind = arguments.value.type })
    }
  }
  return_type = jsonencode({ typeKind = each.value.return_type })

  remote_function_options {
    endpoint          = google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri
    connection        = google_bigquery_connection.functions[0].name
    max_batching_rows = tostring(var.bigquery_max_batching_rows)
    user_defined_context = {
      output  = each.value.output
      api_key = var.bigquery_api_key
    }
  }

  lifecycle {
    precondition {
      condition     = var.bigquery_api_key != null
      error_message = "bigquery = true needs bigquery_api_key (a client key also listed in the API-keys secret): BigQuery cannot send the X-API-Key header."
    }
  }

  # A routine called before its invoker grant exists fails the query with 403.
  depends_on = [google_cloud_run_v2_service_iam_member.bigquery_invoker]
}

output "bigquery_connection_service_account" {
  description = "Service account BigQuery uses to call the functions (granted roles/run.invoker on both); null when bigquery = false."
  value       = var.bigquery ? google_bigquery_connection.functions[0].cloud_resource[0].service_account_id : null
}

output "bigquery_routines" {
  description = "Fully qualified names of the remote functions, e.g. `project.velocast.predict_count` (empty when bigquery = false)."
  value       = { for name, routine in google_bigquery_routine.remote : name => "${var.project_id}.${routine.dataset_id}.${name}" }
}
