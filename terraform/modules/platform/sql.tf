# Cloud SQL PostgreSQL 15: regional HA (automatic failover to the standby zone), private IP
# only, TLS required, CMEK, daily backup at 02:00 UTC kept 30 days, PITR with 7 days of WAL.
resource "google_sql_database_instance" "main" {
  #checkov:skip=CKV_GCP_6:TLS is required (ssl_mode ENCRYPTED_ONLY) on a private-IP-only instance; client certificates need the Cloud SQL Auth Proxy, which has no Rust connector, and callers authenticate with IAM or a Secret Manager password
  #checkov:skip=CKV_GCP_79:PostgreSQL 15 on purpose: development, tests and migrations run against PostgreSQL 15; the major upgrade is one change for all of them
  #checkov:skip=CKV2_GCP_13:log_duration writes a line for every statement of an 80-way concurrent API; Query Insights already records statement latency
  name                = "dta-wide-${var.environment}"
  project             = var.project_id
  region              = var.region
  database_version    = "POSTGRES_15"
  encryption_key_name = google_kms_crypto_key.keys["cloudsql"].id
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.sql_tier
    edition                     = "ENTERPRISE"
    availability_type           = "REGIONAL"
    disk_type                   = "PD_SSD"
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = local.labels

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      location                       = var.region
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = 30
        retention_unit   = "COUNT"
      }
    }

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = google_compute_network.vpc.id
      enable_private_path_for_google_cloud_services = true
      ssl_mode                                      = "ENCRYPTED_ONLY"
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    password_validation_policy {
      enable_password_policy      = true
      min_length                  = 16
      complexity                  = "COMPLEXITY_DEFAULT"
      disallow_username_substring = true
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
  }

  depends_on = [
    google_service_networking_connection.private_services,
    google_kms_crypto_key_iam_member.service_agents,
  ]
}

resource "google_sql_database" "app" {
  name     = "dta_wide"
  project  = var.project_id
  instance = google_sql_database_instance.main.name
}

# The API signs in as its own IAM identity; db-admins as an IAM group whose database role is
# read-only (granted by a migration), and only while a Privileged Access Manager grant is active.
resource "google_sql_user" "api" {
  name     = trimsuffix(google_service_account.api.email, ".gserviceaccount.com")
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

resource "google_sql_user" "db_admins" {
  name     = var.db_admins_group
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  type     = "CLOUD_IAM_GROUP"
}

# Scratch instance for the nightly backup-verification job: it restores the newest backup
# of the main instance here, compares row counts and checksums with the source and checks
# the RPO. Same encryption, network and TLS rules as the main instance; zonal and without
# backups of its own, because it only ever holds a copy of a backup. The job drops the
# restored database when it is done.
resource "google_sql_database_instance" "restore_check" {
  #checkov:skip=CKV_GCP_6:TLS is required (ssl_mode ENCRYPTED_ONLY) on a private-IP-only instance; client certificates need the Cloud SQL Auth Proxy, which has no Rust connector
  #checkov:skip=CKV_GCP_79:PostgreSQL 15, the version of the main instance whose backups it restores
  #checkov:skip=CKV2_GCP_13:log_duration adds nothing here; the restore check logs its own timings
  #checkov:skip=CKV_GCP_14:a scratch copy of a backup needs no backups of its own; the main instance has them
  name                = "dta-wide-${var.environment}-restore-check"
  project             = var.project_id
  region              = var.region
  database_version    = "POSTGRES_15"
  encryption_key_name = google_kms_crypto_key.keys["cloudsql"].id
  deletion_protection = false

  settings {
    tier              = "db-custom-1-3840"
    edition           = "ENTERPRISE"
    availability_type = "ZONAL"
    disk_type         = "PD_SSD"
    disk_autoresize   = true
    user_labels       = merge(local.labels, { role = "restore-check" })

    backup_configuration {
      enabled = false
    }

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.vpc.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
  }

  depends_on = [
    google_service_networking_connection.private_services,
    google_kms_crypto_key_iam_member.service_agents,
  ]
}

# Restoring is allowed into the scratch instance only, never over the main one.
resource "google_project_iam_custom_role" "restore_check" {
  role_id     = "dtaWideRestoreCheck"
  project     = var.project_id
  title       = "dta-wide restore check"
  description = "Restore a backup into the restore-check instance"
  permissions = ["cloudsql.instances.get", "cloudsql.instances.restoreBackup"]
}

resource "google_project_iam_member" "api_restore_check" {
  project = var.project_id
  role    = google_project_iam_custom_role.restore_check.name
  member  = "serviceAccount:${google_service_account.api.email}"

  condition {
    title      = "restore-check instance only"
    expression = "resource.name == \"projects/${var.project_id}/instances/${google_sql_database_instance.restore_check.name}\""
  }
}
