output "name" {
  description = "Cloud Run service name."
  value       = module.service.name
}

output "uri" {
  description = "The service's run.app URL."
  value       = module.service.uri
}

output "subscription_ids" {
  description = "Push subscription ids by key."
  value       = { for k, s in google_pubsub_subscription.push : k => s.id }
}
