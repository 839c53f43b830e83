# VPC Service Controls: the project's data services answer only inside this perimeter, so a
# stolen credential cannot copy data to a project outside it. The region restriction itself
# is the gcp.resourceLocations policy (project.tf); the perimeter adds the exfiltration guard.
locals {
  restricted_services = [
    "artifactregistry.googleapis.com",
    "cloudkms.googleapis.com",
    "firestore.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_access_context_manager_service_perimeter" "main" {
  parent         = "accessPolicies/${var.access_policy_id}"
  name           = "accessPolicies/${var.access_policy_id}/servicePerimeters/dta_wide_${var.environment}"
  title          = "dta-wide ${var.environment}"
  perimeter_type = "PERIMETER_TYPE_REGULAR"

  status {
    resources           = ["projects/${local.project_number}"]
    restricted_services = local.restricted_services

    vpc_accessible_services {
      enable_restriction = true
      allowed_services   = ["RESTRICTED-SERVICES"]
    }

    # The deployment pipeline comes from outside (GitHub runners via Workload Identity
    # Federation) and may reach only the registry and Cloud Run.
    ingress_policies {
      ingress_from {
        identities = ["serviceAccount:${google_service_account.ci_cd.email}"]
        sources {
          access_level = "*"
        }
      }
      ingress_to {
        resources = ["*"]
        operations {
          service_name = "artifactregistry.googleapis.com"
          method_selectors {
            method = "*"
          }
        }
        operations {
          service_name = "run.googleapis.com"
          method_selectors {
            method = "*"
          }
        }
      }
    }
  }
}
