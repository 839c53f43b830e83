output "name" {
  description = "Cloud Run service name."
  value       = google_cloud_run_v2_service.this.name
}

output "uri" {
  description = "The service's run.app URL (reachable only from the load balancer and internal callers)."
  value       = google_cloud_run_v2_service.this.uri
}

output "id" {
  description = "Resource id of the service."
  value       = google_cloud_run_v2_service.this.id
}
