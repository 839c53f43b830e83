# One key per purpose (TR-03161 O.Cryp_4), all HSM-backed, all rotating every 90 days.
locals {
  kms_rotation_period = "7776000s" # 90 days

  kms_keys = {
    cloudsql  = "Cloud SQL storage and backups (CMEK)"
    redis     = "Memorystore (CMEK)"
    firestore = "Firestore analysis logs (CMEK)"
    storage   = "Cloud Storage archive and backup-drill buckets (CMEK)"
    secrets   = "Secret Manager payloads (CMEK)"
    pubsub    = "Pub/Sub messages at rest (CMEK)"
    registry  = "Artifact Registry images (CMEK)"
    envelope  = "Wraps the AES-256-GCM data keys of health-data fields"
  }

  # Google service agents that encrypt with the keys above.
  kms_service_agents = {
    cloudsql  = "serviceAccount:service-${local.project_number}@gcp-sa-cloud-sql.iam.gserviceaccount.com"
    redis     = "serviceAccount:service-${local.project_number}@cloud-redis.iam.gserviceaccount.com"
    firestore = "serviceAccount:service-${local.project_number}@gcp-sa-firestore.iam.gserviceaccount.com"
    storage   = "serviceAccount:service-${local.project_number}@gs-project-accounts.iam.gserviceaccount.com"
    secrets   = "serviceAccount:service-${local.project_number}@gcp-sa-secretmanager.iam.gserviceaccount.com"
    pubsub    = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    registry  = "serviceAccount:service-${local.project_number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    envelope  = "serviceAccount:${google_service_account.api.email}"
  }
}

resource "google_kms_key_ring" "main" {
  name     = "dta-wide-${var.environment}"
  project  = var.project_id
  location = var.region
}

resource "google_kms_crypto_key" "keys" {
  for_each = local.kms_keys

  name            = each.key
  key_ring        = google_kms_key_ring.main.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = local.kms_rotation_period
  labels          = merge(local.labels, { purpose = each.key })

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = "HSM"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = local.kms_service_agents

  crypto_key_id = google_kms_crypto_key.keys[each.key].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
