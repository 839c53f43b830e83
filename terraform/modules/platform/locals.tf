locals {
  labels = {
    app         = "dta-wide"
    environment = var.environment
  }

  image_base = "${var.region}-docker.pkg.dev/${var.project_id}/dta-wide"

  # The five secrets of the design. The secret id is the environment variable name.
  secret_names = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "OPENAI_API_KEY", "MAILGUN_API_KEY"]

  # Environment every function gets; names match common::config.
  common_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    LOG_FORMAT           = "json"
    RUST_LOG             = "info"
    DEPLOY_ENVIRONMENT   = var.environment
  }

  # HTTPS functions behind the load balancer. paths: URL map path rules.
  # secrets: env var names read from Secret Manager. OPENAI_API_KEY is given to no function
  # until the data-protection officer approves a use that keeps health data in the EU.
  http_services = {
    auth = {
      paths   = ["/v1/auth/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "MAILGUN_API_KEY"]
    }
    sleep-diary = {
      paths   = ["/v1/sleep-logs", "/v1/sleep-logs/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
    }
    log-ingestion = {
      paths   = ["/v1/imports/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
    }
    questionnaire-scoring = {
      paths   = ["/v1/questionnaires", "/v1/questionnaires/*", "/v1/questionnaire-responses", "/v1/questionnaire-responses/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
    }
    privacy = {
      paths   = ["/v1/me", "/v1/me/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
    }
  }

  # Pub/Sub push functions. Their public routes (if any) also go through the load balancer.
  push_services = {
    sleep-analysis = {
      paths   = ["/v1/sleep-window"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
      subscriptions = {
        sleep-log = { topic = "sleep-log", path = "/pubsub/sleep-log" }
      }
    }
  }

  # Cloud Run jobs. Scheduled ones are started by scheduler/*.yaml.
  jobs = {
    migrate = {
      secrets         = ["DATABASE_URL"]
      timeout_seconds = 900
      max_retries     = 0
    }
    backup-verification = {
      secrets         = ["DATABASE_URL"]
      timeout_seconds = 3600
      max_retries     = 1
      env = {
        SQL_INSTANCE           = google_sql_database_instance.main.name
        RESTORE_CHECK_INSTANCE = google_sql_database_instance.restore_check.name
        RESTORE_CHECK_HOST     = google_sql_database_instance.restore_check.private_ip_address
        RPO_SECONDS            = "3600"
      }
    }
    log-archiver = {
      secrets         = ["DATABASE_URL"]
      timeout_seconds = 3600
      max_retries     = 1
    }
    retention = {
      secrets         = ["DATABASE_URL", "REDIS_URL"]
      timeout_seconds = 1800
      max_retries     = 1
    }
  }

  # Every function behind the load balancer, with its URL map paths.
  lb_routes = merge(
    { for name, svc in local.http_services : name => svc.paths },
    { for name, svc in local.push_services : name => svc.paths },
  )

  topics = ["sleep-log", "questionnaire", "safety", "audit"]
}
