# ---------------------------------------------------------------------------
# Where to deploy
# ---------------------------------------------------------------------------

variable "project_id" {
  description = "GCP project id to deploy into (6-30 chars: lowercase letters, digits, hyphens; starts with a letter)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id: 6-30 chars, lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "region" {
  description = "Region for the functions, buckets and image repository, e.g. europe-west1 or europe-west9 (Paris)."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like a GCP region, e.g. europe-west1 (a zone such as europe-west1-b is not a region)."
  }
}

variable "name_prefix" {
  description = "Short lowercase prefix for every resource name (functions, service accounts, secrets, buckets). 3-20 chars so that \"<prefix>-<function>\" fits the 30-char service-account id limit (function keys have at most 9)."
  type        = string
  default     = "velocast"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 chars of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "source_dir" {
  description = "Folder holding the built function bundles, one sub-folder per function (classify/, regress/) each with main.py and requirements.txt at its root. Relative paths resolve from the Terraform working directory (terraform/)."
  type        = string
  default     = "../build"

  validation {
    condition     = length(trimspace(var.source_dir)) > 0
    error_message = "source_dir must not be empty."
  }
}

# ---------------------------------------------------------------------------
# The functions: one entry per function, sizing and scaling included
# ---------------------------------------------------------------------------

variable "functions" {
  description = "The HTTP functions, keyed by name. The key is the Task name in shared/velocast/core/tasks.py, the bundle folder under source_dir and the suffix of every per-function resource; entry_point defaults to it. Attributes left out take the defaults of the type: runtime python312, memory 512Mi (Cloud Run notation, must fit cpu), cpu \"1\" (below 1, concurrency must be 1 and memory is capped: 512Mi under 0.5 vCPU, 1Gi under 1 vCPU), min_instances 0 (nothing runs or is billed at rest, at the cost of a cold start after idle), max_instances 5 (caps cost and the load a spike puts on the model bucket), concurrency 8 (above 1 needs cpu >= 1; ONNX Runtime sessions are thread-safe, so one model copy serves them all), timeout_seconds 60 (HTTP functions allow up to 3600). Overriding this variable replaces the whole map: list every function."
  type = map(object({
    description     = string
    entry_point     = optional(string)
    runtime         = optional(string, "python312")
    memory          = optional(string, "512Mi")
    cpu             = optional(string, "1")
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 5)
    concurrency     = optional(number, 8)
    timeout_seconds = optional(number, 60)
  }))
  default = {
    classify = {
      description = "velocast: is traffic at a Paris bike counter above its usual level (affluence classifier)"
    }
    regress = {
      description = "velocast: hourly bike count predicted for a Paris counter (regression models)"
      # Higher than classify: it caches several model types at once.
      memory = "1Gi"
    }
  }

  validation {
    condition     = length(var.functions) >= 1 && alltrue([for name in keys(var.functions) : can(regex("^[a-z][a-z0-9]{1,8}$", name))])
    error_message = "functions needs at least one entry, each keyed by 2-9 lowercase letters or digits starting with a letter (the Task name; \"<name_prefix>-<key>\" must fit the 30-char service-account id)."
  }
  validation {
    condition     = alltrue([for fn in values(var.functions) : length(trimspace(fn.description)) > 0 && length(fn.description) <= 512])
    error_message = "functions[*].description must be 1-512 chars."
  }
  validation {
    condition     = alltrue([for name, fn in var.functions : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", coalesce(fn.entry_point, name)))])
    error_message = "functions[*].entry_point must be a Python function name (letters, digits, underscores)."
  }
  validation {
    condition     = alltrue([for fn in values(var.functions) : contains(["python311", "python312", "python313"], fn.runtime)])
    error_message = "functions[*].runtime must be python311, python312 or python313."
  }
  validation {
    condition     = alltrue([for fn in values(var.functions) : contains(["128Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi", "8Gi", "16Gi", "32Gi"], fn.memory)])
    error_message = "functions[*].memory must be one of 128Mi, 256Mi, 512Mi, 1Gi, 2Gi, 4Gi, 8Gi, 16Gi, 32Gi."
  }
  validation {
    condition     = alltrue([for fn in values(var.functions) : contains(["0.083", "0.167", "0.333", "0.583", "1", "2", "4", "6", "8"], fn.cpu)])
    error_message = "functions[*].cpu must be one of 0.083, 0.167, 0.333, 0.583, 1, 2, 4, 6, 8."
  }
  validation {
    condition     = alltrue([for fn in values(var.functions) : fn.min_instances >= 0 && fn.min_instances <= 10 && floor(fn.min_instances) == fn.min_instances])
    error_message = "functions[*].min_instances must be a whole number between 0 and 10."
  }
  validation {
    condition     = alltrue([for fn in values(var.functions) : fn.max_instances >= 1 && fn.max_instances <= 100 && floor(fn.max_instances) == fn.max_instances])
    error_message = "functions[*].max_instances must be a whole number between 1 and 100."
  }
  validation {
    condition     = alltrue([for fn in values(var.functions) : fn.concurrency >= 1 && fn.concurrency <= 1000 && floor(fn.concurrency) == fn.concurrency])
    error_message = "functions[*].concurrency must be a whole number between 1 and 1000."
  }
  validation {
    condition     = alltrue([for fn in values(var.functions) : fn.timeout_seconds >= 1 && fn.timeout_seconds <= 3600 && floor(fn.timeout_seconds) == fn.timeout_seconds])
    error_message = "functions[*].timeout_seconds must be a whole number between 1 and 3600."
  }
}

# ---------------------------------------------------------------------------
# Who may call the functions
# ---------------------------------------------------------------------------

variable "public" {
  description = "true grants roles/run.invoker to allUsers (anyone on the internet reaches the code; the app still demands an API key). false restricts invocation to invoker_members, who must send a Google ID token."
  type        = bool
  default     = false
}

variable "invoker_members" {
  description = "IAM members allowed to invoke both functions when public = false, e.g. [\"user:ana@example.com\", \"serviceAccount:bq-conn@p.iam.gserviceaccount.com\", \"group:analysts@example.com\"]. Ignored when public = true."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.invoker_members : can(regex("^(user|serviceAccount|group):[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", m))])
    error_message = "Each invoker_members entry must be \"user:<email>\", \"serviceAccount:<email>\" or \"group:<email>\" (allUsers is only granted through public = true)."
  }
}

variable "page_origins" {
  description = "Browser origins allowed to call the functions from another origin (CORS; ALLOWED_ORIGINS), e.g. [\"http://localhost:8000\"] for the forecast page opened through `gcloud run services proxy` on port 8000. Empty: same-origin only. Never \"*\": calls carry API keys."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.page_origins : can(regex("^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", o))])
    error_message = "Each page_origins entry must be an origin like https://host or http://localhost:8000 (no path, no \"*\")."
  }
}

variable "ingress_settings" {
  description = "Network ingress for both functions. ALLOW_ALL (default) lets authorised callers reach the functions from anywhere and relies on IAM (roles/run.invoker) plus API keys; ALLOW_INTERNAL_ONLY / ALLOW_INTERNAL_AND_GCLB additionally require callers inside the VPC or behind a load balancer."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress_settings)
    error_message = "ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "trainer_members" {
  description = "IAM members allowed to impersonate the trainer service account (roles/iam.serviceAccountTokenCreator on it) to publish models without a key file, e.g. [\"user:ana@example.com\"]."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.trainer_members : can(regex("^(user|serviceAccount|group):[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", m))])
    error_message = "Each trainer_members entry must be \"user:<email>\", \"serviceAccount:<email>\" or \"group:<email>\"."
  }
}

# ---------------------------------------------------------------------------
# Application settings passed to the functions
# ---------------------------------------------------------------------------

variable "refresh_seconds" {
  description = "How often (seconds) an instance re-reads the model registry for newer models (REFRESH_SECONDS). POST /refresh forces it sooner."
  type        = number
  default     = 300

  validation {
    condition     = var.refresh_seconds >= 10 && var.refresh_seconds <= 86400 && floor(var.refresh_seconds) == var.refresh_seconds
    error_message = "refresh_seconds must be a whole number between 10 and 86400."
  }
}

variable "max_records" {
  description = "Largest number of records accepted in one request (MAX_RECORDS); bigger requests get 413."
  type        = number
  default     = 1000

  validation {
    condition     = var.max_records >= 1 && var.max_records <= 50000 && floor(var.max_records) == var.max_records
    error_message = "max_records must be a whole number between 1 and 50000."
  }
}

variable "log_level" {
  description = "Application log level (LOG_LEVEL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

# ---------------------------------------------------------------------------
# Buckets and retention
# ---------------------------------------------------------------------------

variable "models_bucket_name" {
  description = "Optional name for the models bucket; null (default) uses \"<project_id>-<name_prefix>-models\". Set it to adopt an existing naming scheme."
  type        = string
  default     = null

  validation {
    condition     = var.models_bucket_name == null ? true : can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.models_bucket_name))
    error_message = "models_bucket_name must be 3-63 chars of lowercase letters, digits, hyphens and underscores, starting and ending with a letter or digit."
  }
}

variable "force_destroy_buckets" {
  description = "Allow `terraform destroy` to delete buckets that still hold objects (models, logs). Leave false outside throwaway environments."
  type        = bool
  default     = false
}

variable "noncurrent_versions_to_keep" {
  description = "Models bucket: noncurrent (deleted or replaced) versions kept per object before lifecycle deletes older ones."
  type        = number
  default     = 3

  validation {
    condition     = var.noncurrent_versions_to_keep >= 1 && var.noncurrent_versions_to_keep <= 100 && floor(var.noncurrent_versions_to_keep) == var.noncurrent_versions_to_keep
    error_message = "noncurrent_versions_to_keep must be a whole number between 1 and 100."
  }
}

variable "noncurrent_version_days" {
  description = "Models bucket: days a noncurrent version is kept before lifecycle deletes it, whatever the version count."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1 && var.noncurrent_version_days <= 3650 && floor(var.noncurrent_version_days) == var.noncurrent_version_days
    error_message = "noncurrent_version_days must be a whole number between 1 and 3650."
  }
}

variable "soft_delete_days" {
  description = "Soft-delete retention for every bucket, in days: 0 disables it, otherwise 7-90 (GCS limits)."
  type        = number
  default     = 7

  validation {
    condition     = var.soft_delete_days == 0 || (var.soft_delete_days >= 7 && var.soft_delete_days <= 90 && floor(var.soft_delete_days) == var.soft_delete_days)
    error_message = "soft_delete_days must be 0 or a whole number between 7 and 90."
  }
}

variable "source_retention_days" {
  description = "Days a function source zip stays in the sources bucket. Cloud Functions copies the source at deploy time, so old zips are only history."
  type        = number
  default     = 30

  validation {
    condition     = var.source_retention_days >= 1 && var.source_retention_days <= 3650 && floor(var.source_retention_days) == var.source_retention_days
    error_message = "source_retention_days must be a whole number between 1 and 3650."
  }
}

variable "access_logs" {
  description = "Write GCS usage logs of the models and sources buckets to a dedicated bucket. That needs a grant to the Google-owned group cloud-storage-analytics@google.com; where the org policy iam.allowedPolicyMemberDomains forbids it, set false and enable Cloud Storage Data Access audit logs instead."
  type        = bool
  default     = true
}

variable "access_log_retention_days" {
  description = "Days the GCS usage logs (who read or wrote models and sources) are kept."
  type        = number
  default     = 90

  validation {
    condition     = var.access_log_retention_days >= 1 && var.access_log_retention_days <= 3650 && floor(var.access_log_retention_days) == var.access_log_retention_days
    error_message = "access_log_retention_days must be a whole number between 1 and 3650."
  }
}
