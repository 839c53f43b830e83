# Archive of analysis logs and audit events, written weekly by log-archiver as compressed
# NDJSON with a manifest. Nearline, CMEK, uniform access, no public access, deleted after one
# year by lifecycle.
#
# Versioning: on, and every noncurrent version is deleted one day after it was replaced or
# deleted. The archiver writes each object once under a new name; versions arise only when a
# chunk is deleted or rewritten (privacy rewrites the chunks holding an erased user's
# documents, Art. 17). Recovery from a mistaken delete or overwrite is the 7-day soft delete;
# the one-day bound keeps an erased user's old chunk from lingering: at most 1 + 7 days, well
# inside the month Art. 12(3) GDPR allows. On this versioned bucket the 365-day rule makes an
# object noncurrent, and the noncurrent rule removes it a day later.
resource "google_storage_bucket" "archive" {
  #checkov:skip=CKV_GCP_62:access is recorded by Cloud Audit Logs data-access logging for storage.googleapis.com (project.tf), which replaces legacy usage logs
  name                        = "${var.project_id}-log-archive"
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "NEARLINE"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = merge(local.labels, { purpose = "log-archive" })

  versioning {
    enabled = true
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

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}

# log-archiver writes chunks and manifests, reads them back and deletes a chunk that does not
# verify; privacy rewrites chunks on erasure: object create/read/delete, no IAM or retention
# settings (objectUser, not objectAdmin). Both run as the API account.
resource "google_storage_bucket_iam_member" "archive_api" {
  bucket = google_storage_bucket.archive.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.api.email}"
}
