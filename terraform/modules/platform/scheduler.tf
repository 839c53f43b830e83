# Cloud Scheduler jobs, one per scheduler/*.yaml (the local runner reads the same files).
locals {
  schedules = {
    for f in fileset(var.scheduler_dir, "*.yaml") :
    trimsuffix(f, ".yaml") => yamldecode(file("${var.scheduler_dir}/${f}"))
  }

  scheduler_accounts = {
    scheduler-invoker = google_service_account.scheduler_invoker.email
  }

  http_service_uris = merge(
    { for name, m in module.http_services : name => m.uri },
    { for name, m in module.push_services : name => m.uri },
  )

  # Split by target kind first, so no expression reads a key the other kind does not have.
  job_schedules  = { for k, s in local.schedules : k => s if s.target.kind == "cloud-run-job" }
  http_schedules = { for k, s in local.schedules : k => s if s.target.kind == "http" }

  schedule_uris = merge(
    { for k, s in local.job_schedules : k => "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${module.jobs[s.target.job].name}:run" },
    { for k, s in local.http_schedules : k => "${local.http_service_uris[s.target.service]}${s.target.path}" },
  )
}

resource "google_cloud_scheduler_job" "jobs" {
  for_each = local.schedules

  name             = each.value.name
  project          = var.project_id
  region           = var.region
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = each.value.time_zone
  attempt_deadline = "${each.value.attempt_deadline_seconds}s"

  retry_config {
    retry_count          = each.value.retry.retry_count
    min_backoff_duration = "${each.value.retry.min_backoff_seconds}s"
    max_backoff_duration = "${each.value.retry.max_backoff_seconds}s"
    max_doublings        = each.value.retry.max_doublings
  }

  http_target {
    http_method = "POST"
    uri         = local.schedule_uris[each.key]
    body        = base64encode(try(each.value.target.body, "{}"))
    headers     = { "Content-Type" = "application/json" }

    # Google APIs (the Cloud Run Admin API that starts a job) take OAuth tokens;
    # our own services take OIDC tokens with the service URL as audience.
    dynamic "oauth_token" {
      for_each = each.value.target.kind == "cloud-run-job" ? [1] : []
      content {
        service_account_email = local.scheduler_accounts[each.value.service_account]
        scope                 = "https://www.googleapis.com/auth/cloud-platform"
      }
    }

    dynamic "oidc_token" {
      for_each = each.value.target.kind == "http" ? [1] : []
      content {
        service_account_email = local.scheduler_accounts[each.value.service_account]
        audience              = local.http_service_uris[each.value.target.service]
      }
    }
  }
}

# The scheduler identity may start exactly the jobs named in scheduler/*.yaml, nothing else.
resource "google_cloud_run_v2_job_iam_member" "scheduler_invoker" {
  for_each = { for k, s in local.job_schedules : k => s.target.job }

  project  = var.project_id
  location = var.region
  name     = module.jobs[each.value].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler_invoker.email}"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  for_each = { for k, s in local.http_schedules : k => s.target.service }

  project  = var.project_id
  location = var.region
  name     = each.value
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler_invoker.email}"
}
