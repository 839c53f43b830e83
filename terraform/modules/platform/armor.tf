# Cloud Armor in front of every backend: the OWASP Top 10 preconfigured WAF rules (ModSecurity
# CRS 3.3, sensitivity 1 first; raise after tuning on staging logs), a log4j rule, a rate-based
# ban for every client IP and a tighter one on the login routes (TR-03161 O.Auth_9).
locals {
  armor_waf_rules = {
    1000 = "sqli-v33-stable"
    1010 = "xss-v33-stable"
    1020 = "lfi-v33-stable"
    1030 = "rfi-v33-stable"
    1040 = "rce-v33-stable"
    1050 = "methodenforcement-v33-stable"
    1060 = "scannerdetection-v33-stable"
    1070 = "protocolattack-v33-stable"
    1080 = "sessionfixation-v33-stable"
    1090 = "java-v33-stable"
    1100 = "nodejs-v33-stable"
    1110 = "cve-canary"
  }
}

resource "google_compute_region_security_policy" "edge" {
  name        = "api-edge"
  project     = var.project_id
  region      = var.region
  description = "OWASP Top 10 preconfigured rules and rate-based bans for the API"
  type        = "CLOUD_ARMOR"
}

resource "google_compute_region_security_policy_rule" "waf" {
  for_each = local.armor_waf_rules

  project         = var.project_id
  region          = var.region
  security_policy = google_compute_region_security_policy.edge.name
  priority        = tonumber(each.key)
  description     = "OWASP preconfigured rule ${each.value}"
  action          = "deny(403)"

  match {
    expr {
      expression = "evaluatePreconfiguredWaf('${each.value}', {'sensitivity': 1})"
    }
  }
}

resource "google_compute_region_security_policy_rule" "login_rate_ban" {
  project         = var.project_id
  region          = var.region
  security_policy = google_compute_region_security_policy.edge.name
  priority        = 2000
  description     = "Brute force on the auth routes: 20 requests per minute per IP, ban 15 minutes"
  action          = "rate_based_ban"

  match {
    expr {
      expression = "request.path.startsWith('/v1/auth/')"
    }
  }

  rate_limit_options {
    conform_action   = "allow"
    exceed_action    = "deny(429)"
    enforce_on_key   = "IP"
    ban_duration_sec = 900

    rate_limit_threshold {
      count        = 20
      interval_sec = 60
    }
  }
}

resource "google_compute_region_security_policy_rule" "rate_ban" {
  project         = var.project_id
  region          = var.region
  security_policy = google_compute_region_security_policy.edge.name
  priority        = 3000
  description     = "Every client IP: 600 requests per minute, ban 10 minutes when exceeded"
  action          = "rate_based_ban"

  match {
    versioned_expr = "SRC_IPS_V1"
    config {
      src_ip_ranges = ["*"]
    }
  }

  rate_limit_options {
    conform_action   = "allow"
    exceed_action    = "deny(429)"
    enforce_on_key   = "IP"
    ban_duration_sec = 600

    rate_limit_threshold {
      count        = 600
      interval_sec = 60
    }
  }
}
