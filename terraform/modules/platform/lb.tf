# One external HTTPS load balancer, regional in europe-west3 so that TLS terminates in
# Frankfurt (a global load balancer would terminate at whichever edge is nearest the client).
# Port 443 only: there is no port-80 listener to redirect from. Cloud Armor on every backend.
resource "google_compute_address" "lb" {
  name         = "api-lb"
  project      = var.project_id
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
}

resource "google_compute_region_network_endpoint_group" "functions" {
  for_each = local.lb_routes

  name                  = "neg-${each.key}"
  project               = var.project_id
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = each.key
  }

  depends_on = [module.http_services, module.push_services]
}

resource "google_compute_region_backend_service" "functions" {
  for_each = local.lb_routes

  name                  = "be-${each.key}"
  project               = var.project_id
  region                = var.region
  protocol              = "HTTPS"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  security_policy       = google_compute_region_security_policy.edge.self_link

  backend {
    group           = google_compute_region_network_endpoint_group.functions[each.key].id
    balancing_mode  = "UTILIZATION"
    capacity_scaler = 1.0
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_region_url_map" "api" {
  name    = "api"
  project = var.project_id
  region  = var.region

  # Paths no rule matches go to auth, which answers 404 in the API's error format.
  default_service = google_compute_region_backend_service.functions["auth"].id

  host_rule {
    hosts        = [var.api_domain]
    path_matcher = "v1"
  }

  path_matcher {
    name            = "v1"
    default_service = google_compute_region_backend_service.functions["auth"].id

    dynamic "path_rule" {
      for_each = local.lb_routes
      content {
        paths   = path_rule.value
        service = google_compute_region_backend_service.functions[path_rule.key].id
      }
    }
  }
}

# Google-managed certificate through Certificate Manager (regional), authorised by DNS.
resource "google_certificate_manager_dns_authorization" "api" {
  name     = "api"
  project  = var.project_id
  location = var.region
  domain   = var.api_domain
  type     = "PER_PROJECT_RECORD"
}

resource "google_certificate_manager_certificate" "api" {
  name     = "api"
  project  = var.project_id
  location = var.region

  managed {
    domains            = [var.api_domain]
    dns_authorizations = [google_certificate_manager_dns_authorization.api.id]
  }
}

# TLS 1.2+ with the RESTRICTED profile: only ECDHE + AES-GCM / ChaCha20 suites, in line with
# BSI TR-02102-2.
resource "google_compute_region_ssl_policy" "api" {
  name            = "api-tls"
  project         = var.project_id
  region          = var.region
  min_tls_version = "TLS_1_2"
  profile         = "RESTRICTED"
}

resource "google_compute_region_target_https_proxy" "api" {
  name                             = "api"
  project                          = var.project_id
  region                           = var.region
  url_map                          = google_compute_region_url_map.api.id
  certificate_manager_certificates = [google_certificate_manager_certificate.api.id]
  ssl_policy                       = google_compute_region_ssl_policy.api.id
}

resource "google_compute_forwarding_rule" "https" {
  name                  = "api-https"
  project               = var.project_id
  region                = var.region
  ip_protocol           = "TCP"
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  network_tier          = "PREMIUM"
  network               = google_compute_network.vpc.id
  ip_address            = google_compute_address.lb.id
  target                = google_compute_region_target_https_proxy.api.id

  depends_on = [google_compute_subnetwork.proxy_only]
}
