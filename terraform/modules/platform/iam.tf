# IAM as in the design's table; nothing holds a primitive role (owner/editor/viewer).
#   dta-wide-api   Cloud SQL Client, Secret Accessor (per secret, secrets.tf), Log Writer,
#                  plus what its stores need: metrics, traces, Firestore, its topics, its buckets,
#                  the envelope key, and restoring into the scratch instance (sql.tf). It is the
#                  only writer of the production database.
#   db-admin       read-only; database access only through an approved, time-boxed grant.
#   ci-cd          Cloud Run deployer and Artifact Registry writer (registry.tf); may act as
#                  dta-wide-api only to deploy revisions that run as it.
#   developers     read-only.
# Two platform identities carry no data access at all: pubsub-invoker (OIDC of push
# subscriptions) and scheduler-invoker (starts the scheduled jobs).
resource "google_service_account" "api" {
  account_id   = "dta-wide-api"
  project      = var.project_id
  display_name = "dta-wide API and jobs"
}

resource "google_service_account" "db_admin" {
  account_id   = "db-admin"
  project      = var.project_id
  display_name = "Database administration (read-only, approval required)"
}

resource "google_service_account" "ci_cd" {
  account_id   = "ci-cd"
  project      = var.project_id
  display_name = "Deployment pipeline"
}

resource "google_service_account" "pubsub_invoker" {
  account_id   = "pubsub-invoker"
  project      = var.project_id
  display_name = "OIDC identity of Pub/Sub push subscriptions"
}

resource "google_service_account" "scheduler_invoker" {
  account_id   = "scheduler-invoker"
  project      = var.project_id
  display_name = "Identity of Cloud Scheduler jobs"
}

locals {
  api_project_roles = [
    "roles/cloudsql.client",
    "roles/cloudsql.viewer",
    "roles/cloudsql.instanceUser",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/cloudtrace.agent",
    "roles/datastore.user",
  ]

  db_admin_project_roles = [
    "roles/cloudsql.viewer",
  ]

  ci_cd_project_roles = [
    "roles/run.developer",
  ]

  developer_project_roles = [
    "roles/browser",
    "roles/run.viewer",
    "roles/cloudsql.viewer",
    "roles/pubsub.viewer",
    "roles/cloudscheduler.viewer",
    "roles/logging.viewer",
    "roles/monitoring.viewer",
    "roles/artifactregistry.reader",
  ]
}

resource "google_project_iam_member" "api" {
  for_each = toset(local.api_project_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.api.email}"
}

resource "google_project_iam_member" "db_admin" {
  for_each = toset(local.db_admin_project_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.db_admin.email}"
}

resource "google_project_iam_member" "db_admins_group" {
  for_each = toset(local.db_admin_project_roles)

  project = var.project_id
  role    = each.value
  member  = "group:${var.db_admins_group}"
}

resource "google_project_iam_member" "ci_cd" {
  for_each = toset(local.ci_cd_project_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.ci_cd.email}"
}

resource "google_project_iam_member" "developers" {
  for_each = toset(local.developer_project_roles)

  project = var.project_id
  role    = each.value
  member  = "group:${var.developers_group}"
}

resource "google_service_account_iam_member" "ci_cd_acts_as_api" {
  service_account_id = google_service_account.api.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.ci_cd.email}"
}

# Database access for db-admins: requested with a justification, approved by someone else,
# at most 2 hours, then revoked automatically.
resource "google_privileged_access_manager_entitlement" "db_read" {
  entitlement_id       = "db-read-${var.environment}"
  location             = "global"
  parent               = "projects/${var.project_id}"
  max_request_duration = "7200s"

  requester_justification_config {
    unstructured {}
  }

  eligible_users {
    principals = ["group:${var.db_admins_group}"]
  }

  privileged_access {
    gcp_iam_access {
      resource_type = "cloudresourcemanager.googleapis.com/Project"
      resource      = "//cloudresourcemanager.googleapis.com/projects/${var.project_id}"
      role_bindings {
        role = "roles/cloudsql.client"
      }
      role_bindings {
        role = "roles/cloudsql.instanceUser"
      }
    }
  }

  approval_workflow {
    manual_approvals {
      require_approver_justification = true
      steps {
        approvals_needed = 1
        approvers {
          principals = ["group:${var.db_access_approvers_group}"]
        }
      }
    }
  }
}
