output "api_ip_address" {
  description = "Address to point the API host's DNS A record at."
  value       = google_compute_address.lb.address
}

output "nat_egress_ip" {
  description = "Static address external APIs see; give it to them for allow-listing."
  value       = google_compute_address.nat.address
}

output "certificate_dns_record" {
  description = "DNS record that authorises the managed certificate."
  value       = google_certificate_manager_dns_authorization.api.dns_resource_record
}

output "workload_identity_provider" {
  description = "Provider resource name for the pipeline's auth step."
  value       = google_iam_workload_identity_pool_provider.github.name
}

output "ci_cd_service_account" {
  description = "Service account the pipeline impersonates."
  value       = google_service_account.ci_cd.email
}

output "vpc_cidr" {
  description = "Address plan of the VPC."
  value       = local.vpc_cidr
}
