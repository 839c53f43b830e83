# VPC 10.0.0.0/16 in europe-west3:
#   10.0.0.0/20   workloads subnet (flow logs on)
#   10.0.16.0/28  Serverless VPC Access connector
#   10.0.32.0/23  proxy-only subnet of the regional external HTTPS load balancer
#   10.0.128.0/20 Private Service Access range (Cloud SQL, Memorystore private IPs)
locals {
  vpc_cidr          = "10.0.0.0/16"
  workloads_cidr    = "10.0.0.0/20"
  connector_cidr    = "10.0.16.0/28"
  proxy_only_cidr   = "10.0.32.0/23"
  private_svc_base  = "10.0.128.0"
  private_svc_bits  = 20
  private_svc_cidr  = "10.0.128.0/20"
  firewall_log_meta = "INCLUDE_ALL_METADATA"
}

resource "google_compute_network" "vpc" {
  name                            = "dta-wide-${var.environment}"
  project                         = var.project_id
  auto_create_subnetworks         = false
  routing_mode                    = "REGIONAL"
  delete_default_routes_on_create = false
}

resource "google_compute_subnetwork" "workloads" {
  name                     = "workloads"
  project                  = var.project_id
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = local.workloads_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 1.0
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_subnetwork" "proxy_only" {
  name          = "lb-proxy-only"
  project       = var.project_id
  region        = var.region
  network       = google_compute_network.vpc.id
  ip_cidr_range = local.proxy_only_cidr
  purpose       = "REGIONAL_MANAGED_PROXY"
  role          = "ACTIVE"
}

resource "google_vpc_access_connector" "serverless" {
  name          = "serverless"
  project       = var.project_id
  region        = var.region
  network       = google_compute_network.vpc.name
  ip_cidr_range = local.connector_cidr
  min_instances = 2
  max_instances = 10
  machine_type  = "e2-micro"
}

# Private IP for Cloud SQL and Memorystore (Private Service Access): neither has a public address.
resource "google_compute_global_address" "private_services" {
  name          = "private-services"
  project       = var.project_id
  network       = google_compute_network.vpc.id
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  address       = local.private_svc_base
  prefix_length = local.private_svc_bits
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

# Cloud NAT with one static address: the only way out to external APIs (e-mail provider),
# so they can allow-list us, and every translation is logged.
resource "google_compute_router" "nat" {
  name    = "nat-router"
  project = var.project_id
  region  = var.region
  network = google_compute_network.vpc.id
}

resource "google_compute_address" "nat" {
  name         = "nat-egress"
  project      = var.project_id
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
}

resource "google_compute_router_nat" "nat" {
  name                               = "nat"
  project                            = var.project_id
  region                             = var.region
  router                             = google_compute_router.nat.name
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = [google_compute_address.nat.self_link]
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ALL"
  }
}

# Firewall: deny by default in both directions; ingress only HTTPS 443 from the load balancer's
# proxies; egress only PostgreSQL, Redis (TLS port 6378) and HTTPS (Google APIs, external APIs
# through Cloud NAT). SSH and RDP are denied explicitly so no later allow rule can open them.
resource "google_compute_firewall" "deny_ssh_rdp" {
  name      = "deny-ssh-rdp"
  project   = var.project_id
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 100

  deny {
    protocol = "tcp"
    ports    = ["22", "3389"]
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = local.firewall_log_meta
  }
}

resource "google_compute_firewall" "allow_https_from_lb" {
  name      = "allow-https-from-lb"
  project   = var.project_id
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 1000

  allow {
    protocol = "tcp"
    ports    = ["443"]
  }
  source_ranges = [local.proxy_only_cidr]

  log_config {
    metadata = local.firewall_log_meta
  }
}

resource "google_compute_firewall" "deny_all_ingress" {
  name      = "deny-all-ingress"
  project   = var.project_id
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 65000

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = local.firewall_log_meta
  }
}

resource "google_compute_firewall" "allow_egress_postgres" {
  name      = "allow-egress-postgres"
  project   = var.project_id
  network   = google_compute_network.vpc.id
  direction = "EGRESS"
  priority  = 1000

  allow {
    protocol = "tcp"
    ports    = ["5432"]
  }
  destination_ranges = [local.private_svc_cidr]

  log_config {
    metadata = local.firewall_log_meta
  }
}

resource "google_compute_firewall" "allow_egress_redis" {
  name      = "allow-egress-redis"
  project   = var.project_id
  network   = google_compute_network.vpc.id
  direction = "EGRESS"
  priority  = 1000

  # 6379 is Redis' plain port, 6378 the port Memorystore serves TLS on (in-transit encryption).
  allow {
    protocol = "tcp"
    ports    = ["6378", "6379"]
  }
  destination_ranges = [local.private_svc_cidr]

  log_config {
    metadata = local.firewall_log_meta
  }
}

resource "google_compute_firewall" "allow_egress_https" {
  name      = "allow-egress-https"
  project   = var.project_id
  network   = google_compute_network.vpc.id
  direction = "EGRESS"
  priority  = 1000

  allow {
    protocol = "tcp"
    ports    = ["443"]
  }
  destination_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = local.firewall_log_meta
  }
}

resource "google_compute_firewall" "deny_all_egress" {
  name      = "deny-all-egress"
  project   = var.project_id
  network   = google_compute_network.vpc.id
  direction = "EGRESS"
  priority  = 65000

  deny {
    protocol = "all"
  }
  destination_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = local.firewall_log_meta
  }
}
