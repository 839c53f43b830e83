terraform {
  required_version = ">= 1.9"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.40"
    }
  }

  backend "gcs" {
    bucket = "dta-wide-terraform-state-production"
    prefix = "platform"
  }
}

provider "google" {
  project               = var.project_id
  region                = var.region
  user_project_override = true
  billing_project       = var.project_id
}

module "platform" {
  source = "../../modules/platform"

  project_id                = var.project_id
  environment               = "production"
  region                    = var.region
  access_policy_id          = var.access_policy_id
  api_domain                = var.api_domain
  github_repository         = var.github_repository
  developers_group          = var.developers_group
  db_admins_group           = var.db_admins_group
  db_access_approvers_group = var.db_access_approvers_group
  sql_tier                  = var.sql_tier
  redis_memory_size_gb      = var.redis_memory_size_gb
  slack_channel_name        = var.slack_channel_name
  slack_auth_token          = var.slack_auth_token
  pagerduty_service_key     = var.pagerduty_service_key
  scheduler_dir             = "${path.root}/../../../scheduler"
  deletion_protection       = var.deletion_protection
  jwt_signing_key_version   = var.jwt_signing_key_version
  jwt_newest_key_version    = var.jwt_newest_key_version
  mailgun_domain            = var.mailgun_domain
  mail_from                 = var.mail_from
  app_link_base             = var.app_link_base
}
