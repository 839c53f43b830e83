# Archive of analysis logs and audit events, written weekly by log-archiver as compressed
# NDJSON with a manifest. Nearline, CMEK, uniform access, no public access, deleted after one
# year by lifecycle.
#
# Versioning: off, on purpose. The archiver writes each object once under a new name and never
# overwrites, so versions would protect nothing it does; they would, however, keep copies of
# erased data alive after an Art. 17 erasure. Accidental deletes are covered by the 7-day soft
# delete, tampering by IAM (only the API account writes; nobody else has object write).
resource "google_storage_bucket" "archive" {
  #checkov:skip=CKV_GCP_78:versioning off by decision (see above): objects are write-once and versions would outlive Art. 17 erasure
  #checkov:skip=CKV_GCP_62:access is recorded by Cloud Audit Logs data-access logging for storage.googleapis.com (project.tf), which replaces legacy usage logs
  name                        = "${var.project_id}-log-archive"
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "NEARLINE"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = false
  }

  encryption {
    default_kms_key_name = google_kms_crypto_key.keys["storage"].id
  }

  soft_delete_policy {
    retention_duration_seconds = 604800
  }

  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}

resource "google_storage_bucket_iam_member" "archive_api" {
  bucket = google_storage_bucket.archive.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.api.email}"
}
