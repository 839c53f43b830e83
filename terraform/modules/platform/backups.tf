# Dumps of the dump-and-restore drill of backup-verification (BACKUP_BUCKET): used where the
# job runs without SQL_INSTANCE; on Cloud SQL it restores the managed backup into the
# restore-check instance instead and writes nothing here. A dump is a copy of the whole
# database, so it is kept only as long as backups are (30 days), under the archive's rules:
# CMEK, uniform access, no public access, versioned with noncurrent versions deleted after a
# day, 7 days of soft delete. Standard class: a dump is read back within the hour it is
# written, and Nearline's retrieval fee and 30-day minimum buy nothing for a 30-day object.
resource "google_storage_bucket" "backups" {
  #checkov:skip=CKV_GCP_62:access is recorded by Cloud Audit Logs data-access logging for storage.googleapis.com (project.tf), which replaces legacy usage logs
  name                        = "${var.project_id}-backup-drill"
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = merge(local.labels, { purpose = "backup-drill" })

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
      age = 30
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

# backup-verification uploads the dump (resumable), reads it back and replaces a rerun's
# objects: object create/read/delete only.
resource "google_storage_bucket_iam_member" "backups_api" {
  bucket = google_storage_bucket.backups.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.api.email}"
}
