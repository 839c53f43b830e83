# Firestore (native mode) for analysis logs and the event stream. The design asks for
# multi-region, but the EU multi-regions (eur3) lie outside Frankfurt and the data-residency
# rule (europe-west3 only) wins: regional europe-west3 (99.99 % SLA), PITR and CMEK instead.
resource "google_firestore_database" "main" {
  name                              = "(default)"
  project                           = var.project_id
  location_id                       = var.region
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"

  cmek_config {
    kms_key_name = google_kms_crypto_key.keys["firestore"].id
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}
