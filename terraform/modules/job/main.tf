# One Cloud Run job: a single task that runs to completion and maps its result to the exit
# code. Started by Cloud Scheduler (scheduler/*.yaml) or by the pipeline (migrate).
resource "google_cloud_run_v2_job" "this" {
  name                = var.name
  project             = var.project_id
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = merge(var.labels, { function = var.name })

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account       = var.service_account_email
      timeout               = "${var.timeout_seconds}s"
      max_retries           = var.max_retries
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      vpc_access {
        connector = var.vpc_connector_id
        egress    = "ALL_TRAFFIC"
      }

      # Secret Manager versions as read-only files, one per version, named by its number.
      dynamic "volumes" {
        for_each = var.secret_files
        content {
          name = volumes.key
          secret {
            secret       = volumes.value.secret
            default_mode = 292 # 0444
            dynamic "items" {
              for_each = volumes.value.versions
              content {
                version = items.value
                path    = items.value
              }
            }
          }
        }
      }

      containers {
        image = var.image

        resources {
          limits = {
            cpu    = var.cpu
            memory = var.memory
          }
        }

        dynamic "env" {
          for_each = var.env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = var.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value.secret
                version = env.value.version
              }
            }
          }
        }

        dynamic "volume_mounts" {
          for_each = var.secret_files
          content {
            name       = volume_mounts.key
            mount_path = volume_mounts.value.mount_path
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      template[0].template[0].containers[0].image,
      client,
      client_version,
    ]
  }
}
