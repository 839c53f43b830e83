variable "project_id" {
  description = "Project of this environment."
  type        = string
}

variable "region" {
  description = "The one region (europe-west3)."
  type        = string
  default     = "europe-west3"
}

variable "access_policy_id" {
  description = "Access Context Manager policy number."
  type        = string
}

variable "api_domain" {
  description = "Public host name of the API."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the deploying repository."
  type        = string
}

variable "developers_group" {
  description = "Read-only developers group."
  type        = string
}

variable "db_admins_group" {
  description = "Group eligible for approved database read access."
  type        = string
}

variable "db_access_approvers_group" {
  description = "Group that approves database access."
  type        = string
}

variable "sql_tier" {
  description = "Cloud SQL machine tier."
  type        = string
}

variable "redis_memory_size_gb" {
  description = "Memorystore capacity in GB."
  type        = number
}

variable "slack_channel_name" {
  description = "Slack channel for warnings."
  type        = string
}

variable "slack_auth_token" {
  description = "Slack token; pass with TF_VAR_slack_auth_token, never in a file."
  type        = string
  sensitive   = true
}

variable "pagerduty_service_key" {
  description = "PagerDuty integration key; pass with TF_VAR_pagerduty_service_key."
  type        = string
  sensitive   = true
}

variable "deletion_protection" {
  description = "Protect stateful resources from destroy."
  type        = bool
  default     = true
}

variable "jwt_signing_key_version" {
  description = "JWT_SECRET version auth signs with (see the platform module)."
  type        = number
}

variable "jwt_newest_key_version" {
  description = "Newest JWT_SECRET version every service accepts."
  type        = number
}

variable "mailgun_domain" {
  description = "Mailgun sending domain (EU region)."
  type        = string
}

variable "mail_from" {
  description = "Sender address of auth's e-mails."
  type        = string
}

variable "app_link_base" {
  description = "Base URL of the links in auth's e-mails."
  type        = string
}
