# A Pub/Sub push function: the Cloud Run service plus its push subscriptions. Every push
# carries an OIDC token of a dedicated account; failures retry with backoff and end in a
# dead-letter topic after max_delivery_attempts.
module "service" {
  source = "../http-service"

  name                  = var.name
  project_id            = var.project_id
  region                = var.region
  image                 = var.image
  service_account_email = var.service_account_email
  vpc_connector_id      = var.vpc_connector_id
  env                   = var.env
  secret_env            = var.secret_env
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
      audience              = module.service.uri
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
