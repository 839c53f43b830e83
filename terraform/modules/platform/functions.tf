# Every function, by kind. Names are the Terraform keys, Cloud Run names and image names.
# Environment, secret references and secret files come from the tables in locals.tf; the
# compliance report (control RUN-ENV-WIRED) fails when a variable the function's code reads
# is not set here, or one is set that no code reads.
module "http_services" {
  source   = "../http-service"
  for_each = local.http_services

  name                  = each.key
  project_id            = var.project_id
  region                = var.region
  image                 = "${local.image_base}/${each.key}:${var.image_tag}"
  service_account_email = google_service_account.api.email
  vpc_connector_id      = google_vpc_access_connector.serverless.id
  env                   = local.function_env[each.key]
  secret_env            = local.function_secrets[each.key]
  secret_files          = local.function_secret_files[each.key]
  behind_load_balancer  = true
  deletion_protection   = var.deletion_protection
  labels                = local.labels
}

module "push_services" {
  source   = "../push-service"
  for_each = local.push_services

  name                       = each.key
  project_id                 = var.project_id
  project_number             = local.project_number
  region                     = var.region
  image                      = "${local.image_base}/${each.key}:${var.image_tag}"
  service_account_email      = google_service_account.api.email
  vpc_connector_id           = google_vpc_access_connector.serverless.id
  env                        = local.function_env[each.key]
  secret_env                 = local.function_secrets[each.key]
  secret_files               = local.function_secret_files[each.key]
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
  env                   = local.function_env[each.key]
  secret_env            = local.function_secrets[each.key]
  secret_files          = local.function_secret_files[each.key]
  timeout_seconds       = each.value.timeout_seconds
  max_retries           = each.value.max_retries
  deletion_protection   = var.deletion_protection
  labels                = local.labels
}

# privacy became a push function (audit events); its service keeps its address.
moved {
  from = module.http_services["privacy"].google_cloud_run_v2_service.this
  to   = module.push_services["privacy"].module.service.google_cloud_run_v2_service.this
}
