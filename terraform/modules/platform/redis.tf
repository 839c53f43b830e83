# Memorystore for Redis, Standard tier (replica in a second zone, automatic failover),
# AUTH on, TLS in transit (port 6378), CMEK, private service access only.
resource "google_redis_instance" "main" {
  name                    = "dta-wide-${var.environment}"
  project                 = var.project_id
  region                  = var.region
  tier                    = "STANDARD_HA"
  memory_size_gb          = var.redis_memory_size_gb
  redis_version           = "REDIS_7_2"
  authorized_network      = google_compute_network.vpc.id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"
  customer_managed_key    = google_kms_crypto_key.keys["redis"].id
  labels                  = local.labels

  redis_configs = {
    maxmemory-policy = "volatile-lru"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "SUNDAY"
      start_time {
        hours   = 3
        minutes = 0
      }
    }
  }

  depends_on = [
    google_service_networking_connection.private_services,
    google_kms_crypto_key_iam_member.service_agents,
  ]
}
