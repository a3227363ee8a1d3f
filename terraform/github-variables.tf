# ---------------------------------------------------------------------------
# Deploy from GitHub Actions (github.tf). Everything there is off until
# github_repository is set.
# ---------------------------------------------------------------------------

variable "github_repository" {
  description = "GitHub repository allowed to deploy this stack through Workload Identity Federation, as OWNER/REPO spelt exactly as GitHub does (token claims are compared case-sensitively), e.g. \"ana/velocast\". Empty (default) creates nothing for GitHub."
  type        = string
  default     = ""

  validation {
    # GitHub's own limits: owner 1-39 chars of letters, digits and single
    # hyphens; repository 1-100 chars of letters, digits, '.', '_', '-'.
    condition     = var.github_repository == "" || can(regex("^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[A-Za-z0-9._-]{1,100}$", var.github_repository))
    error_message = "github_repository must be empty or OWNER/REPO, e.g. \"ana/velocast\"."
  }
}

variable "github_environment" {
  description = "GitHub environment whose jobs may act as the deployer service account (terraform apply, publish, retrain). Protect it in the repository settings with required reviewers and the deploy branch only; the workflows use \"production\"."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,64}$", var.github_environment))
    error_message = "github_environment must be 1-64 chars of letters, digits, '.', '_' or '-'."
  }
}

variable "github_deploy_branch" {
  description = "The only branch whose workflow runs may obtain a Google token outside pull requests (tokens of other branches are refused by the identity provider)."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]{1,200}$", var.github_deploy_branch)) && !startswith(var.github_deploy_branch, "refs/")
    error_message = "github_deploy_branch must be a branch name such as main (without refs/heads/)."
  }
}

variable "github_state_bucket" {
  description = "Name of the Terraform state bucket made once by scripts/bootstrap-github.sh (not managed here: it must exist before any state does). The pull-request planner gets read access to it; empty grants nothing."
  type        = string
  default     = ""

  validation {
    condition     = var.github_state_bucket == "" || can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.github_state_bucket))
    error_message = "github_state_bucket must be empty or a bucket name: 3-63 chars of lowercase letters, digits, hyphens and underscores."
  }
}
