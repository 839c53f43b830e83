# Domain events between functions. Every topic keeps messages in europe-west3 only, is
# encrypted with CMEK and has a dead-letter topic; each dead-letter topic has a pull
# subscription so that nothing dead-lettered is lost before someone looks at it.
#   sleep-log      sleep-log.recorded, sleep-log.ingested
#   questionnaire  questionnaire.scored
#   safety         safety.flagged
#   audit          audit events
locals {
  pubsub_agent = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "events" {
  for_each = toset(local.topics)

  name                       = each.value
  project                    = var.project_id
  kms_key_name               = google_kms_crypto_key.keys["pubsub"].id
  message_retention_duration = "604800s"
  labels                     = local.labels

  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = toset(local.topics)

  name                       = "${each.value}-dead-letter"
  project                    = var.project_id
  kms_key_name               = google_kms_crypto_key.keys["pubsub"].id
  message_retention_duration = "604800s"
  labels                     = local.labels

  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each = toset(local.topics)

  name                       = "${each.value}-dead-letter-hold"
  project                    = var.project_id
  topic                      = google_pubsub_topic.dead_letter[each.value].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}

# Topics without a push consumer yet keep their events for 7 days in a pull subscription
# instead of dropping them. (audit has one: privacy's push subscription.)
resource "google_pubsub_subscription" "retained" {
  for_each = toset(["questionnaire", "safety"])

  name                       = "${each.value}-retained"
  project                    = var.project_id
  topic                      = google_pubsub_topic.events[each.value].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}

# Pub/Sub moves undeliverable messages itself: it publishes to the dead-letter topic and
# acknowledges on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = toset(local.topics)

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.value].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

# Every push subscription of every push function, by its name (push-service names them
# FUNCTION-KEY).
locals {
  push_subscription_names = flatten([
    for name, svc in local.push_services : [for key, _ in svc.subscriptions : "${name}-${key}"]
  ])
}

resource "google_pubsub_subscription_iam_member" "dead_letter_source" {
  for_each = toset(local.push_subscription_names)

  project      = var.project_id
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent

  depends_on = [module.push_services]
}

resource "google_pubsub_topic_iam_member" "api_publisher" {
  for_each = toset(local.topics)

  project = var.project_id
  topic   = google_pubsub_topic.events[each.value].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.api.email}"
}

# The Pub/Sub service agent mints the OIDC tokens of push subscriptions.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.pubsub_invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
