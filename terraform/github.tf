# Keyless deploys from GitHub Actions (.github/workflows/deploy.yml), created
# only when var.github_repository is set. GitHub's OIDC token is exchanged for
# a short-lived Google token (Workload Identity Federation): no key exists.
#
# Two identities, because a pull request's workflow file is the pull request's
# own code:
#   planner  - pull-request jobs: reads the state and the project number, so
#              `terraform plan -refresh=false` shows what the change would do.
#   deployer - jobs of the protected GitHub environment on the deploy branch:
#              terraform apply, make publish, the retrain job.
#
# These resources are applied once by a project owner (README, "Deploy from
# GitHub"). The deployer cannot grant itself more: its project IAM rights are
# limited to the roles the stack itself grants, so a change to this file is
# applied by an owner again.

locals {
  github = var.github_repository != ""

  github_pool_name = local.github ? google_iam_workload_identity_pool.github[0].name : ""

  # GitHub's default `sub` claim: "repo:OWNER/REPO:environment:NAME" for a
  # job that names an environment, "repo:OWNER/REPO:pull_request" for a
  # pull-request job.
  github_deployer_subject   = "repo:${var.github_repository}:environment:${var.github_environment}"
  github_planner_subject    = "repo:${var.github_repository}:pull_request"
  github_deployer_principal = "principal://iam.googleapis.com/${local.github_pool_name}/subject/${local.github_deployer_subject}"
  github_planner_principal  = "principal://iam.googleapis.com/${local.github_pool_name}/subject/${local.github_planner_subject}"

  # Project-level roles of the deployer: what `make deploy` (scripts/cloud.sh
  # deploy = terraform apply of terraform/*.tf) creates, and why each is needed.
  github_deployer_roles = local.github ? {
    # apis.tf: google_project_service enables the APIs the stack uses.
    "roles/serviceusage.serviceUsageAdmin" = "enable the APIs of apis.tf"
    # storage.tf: creates the models, sources and access-logs buckets and
    # sets their IAM (bucket creation is a project permission, and bucket
    # IAM needs storage.buckets.setIamPolicy); uploads the bundle zips; reads
    # and locks the Terraform state.
    "roles/storage.admin" = "create the buckets, set bucket IAM, upload bundles, write the state"
    # registry.tf + iam.tf: creates the image repository and grants the build
    # account write on it (setIamPolicy on a repository is in admin only).
    "roles/artifactregistry.admin" = "create the image repository and set its IAM"
    # functions.tf: creates and updates the two functions (no IAM rights:
    # invokers are set on the Cloud Run services through the custom role).
    "roles/cloudfunctions.developer" = "create and update the functions"
    # iam.tf: creates the classify, regress, trainer and build accounts and
    # sets IAM on them (trainer_members may impersonate the trainer).
    "roles/iam.serviceAccountAdmin" = "create the service accounts and set their IAM"
  } : {}

  # What no predefined role gives without much more (secretmanager.admin
  # would also read every API key; run.admin would deploy any service).
  github_deployer_permissions = [
    # secrets.tf: the two secret containers and their accessor grants; no
    # secretmanager.versions.access, so the deployer never reads a key.
    "secretmanager.secrets.create",
    "secretmanager.secrets.delete",
    "secretmanager.secrets.get",
    "secretmanager.secrets.getIamPolicy",
    "secretmanager.secrets.list",
    "secretmanager.secrets.setIamPolicy",
    "secretmanager.secrets.update",
    # iam.tf: roles/run.invoker on the functions' Cloud Run services.
    "run.services.get",
    "run.services.getIamPolicy",
    "run.services.setIamPolicy",
    # deploy.yml's smoke test calls /health with the deployer's ID token
    # (public = false needs an invoker).
    "run.routes.invoke",
    # deploy.yml's dispatch job starts the retrain job, if it exists.
    "run.jobs.get",
    "run.jobs.run",
    "run.executions.get",
    "run.operations.get",
    # Refreshing this file's own resources.
    "iam.workloadIdentityPools.get",
    "iam.workloadIdentityPoolProviders.get",
    "iam.roles.get",
    # data.google_project (locals.tf) reads the project number.
    "resourcemanager.projects.get",
  ]

  # Project-level roles that terraform/*.tf grants (iam.tf: the build
  # account's log writer and conditional source reader). The deployer may
  # grant or revoke these and nothing else at project level.
  github_grantable_roles = ["roles/logging.logWriter", "roles/storage.objectViewer"]

  # The deployer acts as these accounts when it deploys the functions.
  github_act_as = merge(
    { for fn in keys(local.functions) : fn => google_service_account.fn[fn].name },
    { build = google_service_account.build.name },
  )
}

# Workload Identity Federation exchanges tokens through the STS API.
resource "google_project_service" "github" {
  for_each = local.github ? toset(["sts.googleapis.com"]) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Pool and provider ids cannot be reused for 30 days after deletion: a
# destroy followed by an apply within that time needs another name_prefix.
resource "google_iam_workload_identity_pool" "github" {
  count = local.github ? 1 : 0

  project                   = var.project_id
  workload_identity_pool_id = "${var.name_prefix}-github"
  display_name              = "GitHub Actions"
  description               = "Tokens of ${var.github_repository}'s workflows"

  depends_on = [google_project_service.this, google_project_service.github]
}

resource "google_iam_workload_identity_pool_provider" "github" {
  #checkov:skip=CKV_GCP_125:False positive. checkov reads var.github_repository at its default, empty (GitHub disabled, count = 0), and so sees the subject repo::pull_request; with a repository set, the condition below pins the sub claim to repo:OWNER/REPO:pull_request or repo:OWNER/REPO:environment:NAME on the deploy branch, as this check asks (tests/unit/test_github_terraform.py asserts it).
  count = local.github ? 1 : 0

  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.github[0].workload_identity_pool_id
  workload_identity_pool_provider_id = "github-oidc"
  display_name                       = "GitHub OIDC"

  attribute_mapping = {
    "google.subject"       = "assertion.sub"
    "attribute.repository" = "assertion.repository"
    "attribute.ref"        = "assertion.ref"
  }

  # Every GitHub repository gets tokens from the same issuer: without this
  # condition any of them could present one. Only this repository, and in it
  # only pull-request jobs (the planner) and the environment's jobs on the
  # deploy branch (the deployer); a token of any other job is refused.
  attribute_condition = "assertion.repository == '${var.github_repository}' && (assertion.sub == 'repo:${var.github_repository}:pull_request' || (assertion.sub == 'repo:${var.github_repository}:environment:${var.github_environment}' && assertion.ref == 'refs/heads/${var.github_deploy_branch}'))"

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }

  lifecycle {
    precondition {
      # google.subject is capped at 127 bytes; a longer sub is refused at sign-in.
      condition     = length(local.github_deployer_subject) <= 127
      error_message = "repo:${var.github_repository}:environment:${var.github_environment} is over 127 chars, the limit of google.subject: use a shorter github_environment."
    }
  }
}

# ---------------------------------------------------------------------------
# Deployer: the protected environment's jobs only
# ---------------------------------------------------------------------------

resource "google_service_account" "github_deployer" {
  count = local.github ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-deployer"
  display_name = "velocast deployer (GitHub Actions)"
  description  = "terraform apply, publish and retrain from ${var.github_repository}, environment ${var.github_environment}"

  depends_on = [google_project_service.this]
}

resource "google_service_account_iam_member" "github_deployer_wif" {
  count = local.github ? 1 : 0

  service_account_id = google_service_account.github_deployer[0].name
  role               = "roles/iam.workloadIdentityUser"
  member             = local.github_deployer_principal
}

resource "google_project_iam_member" "github_deployer" {
  for_each = local.github_deployer_roles

  project = var.project_id
  role    = each.key
  member  = google_service_account.github_deployer[0].member
}

resource "google_project_iam_custom_role" "github_deployer" {
  count = local.github ? 1 : 0

  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_deployer"
  title       = "velocast deployer extras"
  description = "Secret containers without their values, invokers on Cloud Run services, running the retrain job."
  permissions = local.github_deployer_permissions
}

resource "google_project_iam_member" "github_deployer_custom" {
  count = local.github ? 1 : 0

  project = var.project_id
  role    = google_project_iam_custom_role.github_deployer[0].name
  member  = google_service_account.github_deployer[0].member
}

# iam.tf grants two project-level roles to the build account; project IAM
# admin is the only way to do that, so the condition limits what the deployer
# may grant or revoke to those roles (it cannot make itself or anyone owner).
resource "google_project_iam_member" "github_deployer_iam" {
  count = local.github ? 1 : 0

  project = var.project_id
  role    = "roles/resourcemanager.projectIamAdmin"
  member  = google_service_account.github_deployer[0].member

  condition {
    title       = "only-the-stacks-own-roles"
    description = "May grant or revoke only the project-level roles terraform/iam.tf grants."
    expression  = "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(${jsonencode(local.github_grantable_roles)})"
  }
}

# Deploying a function as its runtime account, built by the build account,
# needs actAs on both: granted on those accounts only, not project-wide.
resource "google_service_account_iam_member" "github_deployer_act_as" {
  for_each = local.github ? local.github_act_as : {}

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.github_deployer[0].member
}

# `AS_TRAINER=1 make publish`: models are published as the trainer, whose
# create-only grant on the models bucket cannot overwrite a published model.
resource "google_service_account_iam_member" "github_deployer_trainer" {
  count = local.github ? 1 : 0

  service_account_id = google_service_account.trainer.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.github_deployer[0].member
}

# ---------------------------------------------------------------------------
# Planner: pull-request jobs, read-only
# ---------------------------------------------------------------------------

resource "google_service_account" "github_planner" {
  count = local.github ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-planner"
  display_name = "velocast planner (GitHub Actions)"
  description  = "terraform plan -refresh=false for pull requests of ${var.github_repository}: reads the state, changes nothing"

  depends_on = [google_project_service.this]
}

resource "google_service_account_iam_member" "github_planner_wif" {
  count = local.github ? 1 : 0

  service_account_id = google_service_account.github_planner[0].name
  role               = "roles/iam.workloadIdentityUser"
  member             = local.github_planner_principal
}

# data.google_project (locals.tf) reads the project number even without
# refresh; roles/browser is the smallest predefined role with projects.get.
resource "google_project_iam_member" "github_planner_browser" {
  count = local.github ? 1 : 0

  project = var.project_id
  role    = "roles/browser"
  member  = google_service_account.github_planner[0].member
}

# The state (no key is ever in it: secrets.tf) read with -lock=false.
resource "google_storage_bucket_iam_member" "github_planner_state" {
  count = local.github && var.github_state_bucket != "" ? 1 : 0

  bucket = var.github_state_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.github_planner[0].member
}

# ---------------------------------------------------------------------------
# What the workflows need (set as GitHub repository variables)
# ---------------------------------------------------------------------------

output "github_workload_identity_provider" {
  description = "Full name of the GitHub OIDC provider: repository variable GCP_WORKLOAD_IDENTITY_PROVIDER (null when github_repository is empty)."
  value       = local.github ? google_iam_workload_identity_pool_provider.github[0].name : null
}

output "github_deployer_service_account" {
  description = "Email of the deployer account: repository variable GCP_DEPLOYER_SERVICE_ACCOUNT (null when github_repository is empty)."
  value       = local.github ? google_service_account.github_deployer[0].email : null
}

output "github_planner_service_account" {
  description = "Email of the pull-request planner account: repository variable GCP_PLANNER_SERVICE_ACCOUNT (null when github_repository is empty)."
  value       = local.github ? google_service_account.github_planner[0].email : null
}
