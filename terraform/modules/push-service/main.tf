# A Pub/Sub push function: the Cloud Run service plus its push subscriptions. Every push
# carries an OIDC token of a dedicated account; failures retry with backoff and end in a
# dead-letter topic after max_delivery_attempts.
#
# The token's audience is the service's deterministic URL
# (https://SERVICE-PROJECT_NUMBER.REGION.run.app, Cloud Run "HTTPS request" docs), known
# before the service exists, so the service can be told it (PUSH_AUDIENCE) without a cycle.
# The service verifies audience and signer (PUSH_SERVICE_ACCOUNT) itself, because behind the
# load balancer Cloud Run's invoker check is off.
locals {
  push_audience = "https://${var.name}-${var.project_number}.${var.region}.run.app"
  env = merge(var.env, {
    PUSH_AUDIENCE        = local.push_audience
    PUSH_SERVICE_ACCOUNT = var.push_service_account_email
  })
}

module "service" {
  source = "../http-service"

  name                  = var.name
  project_id            = var.project_id
  region                = var.region
  image                 = var.image
  service_account_email = var.service_account_email
  vpc_connector_id      = var.vpc_connector_id
  env                   = local.env
  secret_env            = var.secret_env
  secret_files          = var.secret_files
  behind_load_balancer  = var.behind_load_balancer
  deletion_protection   = var.deletion_protection
  labels                = var.labels
}

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  project  = var.project_id
  location = var.region
  name     = module.service.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.push_service_account_email}"
}

resource "google_pubsub_subscription" "push" {
  for_each = var.subscriptions

  name    = "${var.name}-${each.key}"
  project = var.project_id
  topic   = each.value.topic
  labels  = merge(var.labels, { function = var.name })

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  enable_message_ordering    = false

  push_config {
    push_endpoint = "${module.service.uri}${each.value.path}"
    oidc_token {
      service_account_email = var.push_service_account_email
      audience              = local.push_audience
    }
    attributes = {
      x-goog-version = "v1"
    }
  }

  dead_letter_policy {
    dead_letter_topic     = each.value.dead_letter_topic
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }
}
