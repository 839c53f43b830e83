# Every function, by kind. Names are the Terraform keys, Cloud Run names and image names.
module "http_services" {
  source   = "../http-service"
  for_each = local.http_services

  name                  = each.key
  project_id            = var.project_id
  region                = var.region
  image                 = "${local.image_base}/${each.key}:${var.image_tag}"
  service_account_email = google_service_account.api.email
  vpc_connector_id      = google_vpc_access_connector.serverless.id
  env                   = local.common_env
  secret_env            = { for s in each.value.secrets : s => { secret = google_secret_manager_secret.app[s].secret_id, version = "latest" } }
  behind_load_balancer  = true
  deletion_protection   = var.deletion_protection
  labels                = local.labels
}

module "push_services" {
  source   = "../push-service"
  for_each = local.push_services

  name                       = each.key
  project_id                 = var.project_id
  region                     = var.region
  image                      = "${local.image_base}/${each.key}:${var.image_tag}"
  service_account_email      = google_service_account.api.email
  vpc_connector_id           = google_vpc_access_connector.serverless.id
  env                        = local.common_env
  secret_env                 = { for s in each.value.secrets : s => { secret = google_secret_manager_secret.app[s].secret_id, version = "latest" } }
  behind_load_balancer       = length(each.value.paths) > 0
  push_service_account_email = google_service_account.pubsub_invoker.email
  max_delivery_attempts      = 5
  deletion_protection        = var.deletion_protection
  labels                     = local.labels
  subscriptions = {
    for key, sub in each.value.subscriptions : key => {
      topic             = google_pubsub_topic.events[sub.topic].id
      dead_letter_topic = google_pubsub_topic.dead_letter[sub.topic].id
      path              = sub.path
    }
  }
}

module "jobs" {
  source   = "../job"
  for_each = local.jobs

  name                  = each.key
  project_id            = var.project_id
  region                = var.region
  image                 = "${local.image_base}/${each.key}:${var.image_tag}"
  service_account_email = google_service_account.api.email
  vpc_connector_id      = google_vpc_access_connector.serverless.id
  env                   = merge(local.common_env, { ARCHIVE_BUCKET = google_storage_bucket.archive.name }, try(each.value.env, {}))
  secret_env            = { for s in each.value.secrets : s => { secret = google_secret_manager_secret.app[s].secret_id, version = "latest" } }
  timeout_seconds       = each.value.timeout_seconds
  max_retries           = each.value.max_retries
  deletion_protection   = var.deletion_protection
  labels                = local.labels
}
