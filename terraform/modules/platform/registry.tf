# Container images, one per function, in Frankfurt. Tags are immutable: the pipeline deploys
# by digest and a tag never moves to other bytes.
resource "google_artifact_registry_repository" "images" {
  repository_id = "dta-wide"
  project       = var.project_id
  location      = var.region
  format        = "DOCKER"
  description   = "dta-wide function images"
  kms_key_name  = google_kms_crypto_key.keys["registry"].id
  labels        = local.labels

  docker_config {
    immutable_tags = true
  }

  # Rollback needs recent digests: the newest 30 versions always stay; older ones go after
  # 180 days.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 30
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "15552000s"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}

resource "google_artifact_registry_repository_iam_member" "ci_writer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.ci_cd.email}"
}
