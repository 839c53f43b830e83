# Alerts by severity: CRITICAL pages the on-call rotation (and copies Slack), WARNING goes to
# Slack only. Latency and status codes come from Cloud Run's own request metrics (every
# request is logged by the platform); the DB pool gauge is a log-based metric over the
# structured line each service writes every 30 s:
#   {"message":"db pool","metric":"db_pool","utilization":0.42,"in_use":21,"size":50}
resource "google_monitoring_notification_channel" "pager" {
  display_name = "On-call pager (${var.environment})"
  project      = var.project_id
  type         = "pagerduty"

  sensitive_labels {
    service_key = var.pagerduty_service_key
  }
}

resource "google_monitoring_notification_channel" "slack" {
  display_name = "Slack #${var.slack_channel_name}"
  project      = var.project_id
  type         = "slack"

  labels = {
    channel_name = var.slack_channel_name
  }

  sensitive_labels {
    auth_token = var.slack_auth_token
  }
}

locals {
  channels_by_severity = {
    CRITICAL = [google_monitoring_notification_channel.pager.id, google_monitoring_notification_channel.slack.id]
    WARNING  = [google_monitoring_notification_channel.slack.id]
  }
}

resource "google_logging_metric" "db_pool_utilization" {
  name    = "db_pool_utilization"
  project = var.project_id
  filter  = "resource.type=\"cloud_run_revision\" AND jsonPayload.metric=\"db_pool\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
    labels {
      key        = "service"
      value_type = "STRING"
    }
  }

  value_extractor = "EXTRACT(jsonPayload.utilization)"
  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }

  bucket_options {
    linear_buckets {
      num_finite_buckets = 20
      width              = 0.05
      offset             = 0
    }
  }
}

resource "google_monitoring_alert_policy" "api_latency_p95" {
  display_name = "API P95 latency > 2 s"
  project      = var.project_id
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "P95 request latency above 2000 ms for 5 minutes"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_latencies\""
      comparison      = "COMPARISON_GT"
      threshold_value = 2000
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_PERCENTILE_95"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  notification_channels = local.channels_by_severity["WARNING"]
}

resource "google_monitoring_alert_policy" "api_error_rate" {
  display_name = "API error rate > 5 %"
  project      = var.project_id
  combiner     = "OR"
  severity     = "CRITICAL"

  conditions {
    display_name = "5xx share of requests above 5 % for 5 minutes"
    condition_prometheus_query_language {
      query               = "sum by (service_name) (rate(run_googleapis_com:request_count{monitored_resource=\"cloud_run_revision\",response_code_class=\"5xx\"}[5m])) / sum by (service_name) (rate(run_googleapis_com:request_count{monitored_resource=\"cloud_run_revision\"}[5m])) > 0.05"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  notification_channels = local.channels_by_severity["CRITICAL"]
}

resource "google_monitoring_alert_policy" "db_pool" {
  display_name = "DB connection pool > 80 %"
  project      = var.project_id
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "Pool utilisation above 0.8 for 5 minutes"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.db_pool_utilization.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0.8
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["metric.label.service"]
      }
    }
  }

  notification_channels = local.channels_by_severity["WARNING"]
}

resource "google_monitoring_alert_policy" "redis_memory" {
  display_name = "Redis memory > 90 %"
  project      = var.project_id
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "Memorystore memory usage ratio above 0.9"
    condition_threshold {
      filter          = "resource.type = \"redis_instance\" AND metric.type = \"redis.googleapis.com/stats/memory/usage_ratio\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0.9
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  notification_channels = local.channels_by_severity["WARNING"]
}

# Certificate expiry is measured from outside by an uptime check on the API host.
resource "google_monitoring_uptime_check_config" "api_tls" {
  display_name     = "API TLS (${var.api_domain})"
  project          = var.project_id
  timeout          = "10s"
  period           = "300s"
  selected_regions = ["EUROPE", "USA", "SOUTH_AMERICA"]

  http_check {
    path           = "/v1/auth/health"
    port           = 443
    use_ssl        = true
    validate_ssl   = true
    request_method = "GET"
    accepted_response_status_codes {
      status_class = "STATUS_CLASS_2XX"
    }
    accepted_response_status_codes {
      status_class = "STATUS_CLASS_4XX"
    }
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = var.api_domain
    }
  }
}

resource "google_monitoring_alert_policy" "tls_certificate_expiry" {
  display_name = "TLS certificate expires in < 30 days"
  project      = var.project_id
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "Days until the API certificate expires below 30"
    condition_threshold {
      filter          = "resource.type = \"uptime_url\" AND metric.type = \"monitoring.googleapis.com/uptime_check/time_until_ssl_cert_expires\" AND metric.label.check_id = \"${google_monitoring_uptime_check_config.api_tls.uptime_check_id}\""
      comparison      = "COMPARISON_LT"
      threshold_value = 30
      duration        = "600s"
      aggregations {
        alignment_period     = "1200s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_MIN"
      }
    }
  }

  notification_channels = local.channels_by_severity["WARNING"]
}

resource "google_monitoring_alert_policy" "backup_verification_failed" {
  display_name = "Backup verification failed or did not run"
  project      = var.project_id
  combiner     = "OR"
  severity     = "CRITICAL"

  conditions {
    display_name = "backup-verification execution failed"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_job\" AND resource.label.job_name = \"backup-verification\" AND metric.type = \"run.googleapis.com/job/completed_execution_count\" AND metric.label.result = \"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  # A nightly job: 26 hours without a success means a night was missed, without flapping
  # between two normal runs.
  conditions {
    display_name = "no successful backup-verification for 26 hours"
    condition_prometheus_query_language {
      query               = "absent_over_time(run_googleapis_com:job_completed_execution_count{monitored_resource=\"cloud_run_job\",job_name=\"backup-verification\",result=\"succeeded\"}[26h])"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  notification_channels = local.channels_by_severity["CRITICAL"]
}
