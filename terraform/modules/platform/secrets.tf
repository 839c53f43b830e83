# The secrets (locals.tf secret_names). Values are added as versions out of band (never in Terraform state).
# Only the API service account may read them; every access lands in the data-access audit
# log (project.tf). Secret Manager has no "keep N versions" setting: the rotation runbook
# disables, and destroys after the delay below, every version older than the newest three;
# the label records that rule for the evidence.
resource "google_secret_manager_secret" "app" {
  for_each = toset(local.secret_names)

  secret_id           = each.value
  project             = var.project_id
  version_destroy_ttl = "604800s"
  labels              = merge(local.labels, { keep-versions = "3" })

  replication {
    user_managed {
      replicas {
        location = var.region
        customer_managed_encryption {
          kms_key_name = google_kms_crypto_key.keys["secrets"].id
        }
      }
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}

resource "google_secret_manager_secret_iam_member" "api_accessor" {
  for_each = toset(local.secret_names)

  project   = var.project_id
  secret_id = google_secret_manager_secret.app[each.value].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.api.email}"
}
