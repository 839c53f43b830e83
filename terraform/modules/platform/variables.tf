variable "project_id" {
  description = "Project of this environment."
  type        = string
}

variable "environment" {
  description = "staging or production."
  type        = string
  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment is staging or production."
  }
}

variable "region" {
  description = "The one region everything runs in (DiGA data residency: Frankfurt)."
  type        = string
  default     = "europe-west3"
  validation {
    condition     = var.region == "europe-west3"
    error_message = "Every resource runs in europe-west3."
  }
}

variable "access_policy_id" {
  description = "Access Context Manager policy number that holds the VPC Service Controls perimeters."
  type        = string
}

variable "api_domain" {
  description = "Public host name of the API, served by the external HTTPS load balancer."
  type        = string
}

variable "image_tag" {
  description = "Image tag used when a function is first created; afterwards the pipeline deploys by digest."
  type        = string
  default     = "bootstrap"
}

variable "github_repository" {
  description = "owner/name of the repository whose main-branch workflow may deploy (Workload Identity Federation)."
  type        = string
}

variable "developers_group" {
  description = "Google group of developers: read-only access."
  type        = string
}

variable "db_admins_group" {
  description = "Google group that may request temporary, approved read access to the database."
  type        = string
}

variable "db_access_approvers_group" {
  description = "Google group whose members approve database access requests."
  type        = string
}

variable "sql_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-2-7680"
}

variable "redis_memory_size_gb" {
  description = "Memorystore capacity."
  type        = number
  default     = 1
}

variable "slack_channel_name" {
  description = "Slack channel for warnings (and a copy of every critical alert)."
  type        = string
}

variable "slack_auth_token" {
  description = "Slack app token for the notification channel."
  type        = string
  sensitive   = true
}

variable "pagerduty_service_key" {
  description = "PagerDuty integration key of the on-call rotation: receives critical alerts."
  type        = string
  sensitive   = true
}

variable "scheduler_dir" {
  description = "Directory holding the scheduler/*.yaml job definitions."
  type        = string
}

variable "deletion_protection" {
  description = "Protect stateful resources (database, services, jobs) from terraform destroy."
  type        = bool
  default     = true
}

variable "jwt_signing_key_version" {
  description = "Secret Manager version of JWT_SECRET that auth signs with (its number is the token's kid). Rotation: add a version, raise jwt_newest_key_version and apply (every service accepts it), then raise this and apply (auth signs with it)."
  type        = number
  default     = 1
  validation {
    condition     = var.jwt_signing_key_version >= 1
    error_message = "Secret Manager versions start at 1."
  }
}

variable "jwt_newest_key_version" {
  description = "Newest JWT_SECRET version every service accepts: the signing version, or one above it during a rotation."
  type        = number
  default     = 1
  validation {
    condition     = var.jwt_newest_key_version >= var.jwt_signing_key_version && var.jwt_newest_key_version <= var.jwt_signing_key_version + 1
    error_message = "The newest accepted version is the signing version or the one after it."
  }
}

variable "mailgun_domain" {
  description = "Mailgun sending domain (EU region) of auth's e-mails; the API key is the MAILGUN_API_KEY secret."
  type        = string
}

variable "mail_from" {
  description = "Sender address of auth's e-mails, on the Mailgun domain."
  type        = string
}

variable "app_link_base" {
  description = "Base URL the links in auth's e-mails point to (the app's verification and reset pages)."
  type        = string
}
