"""The compliance report catches each weakening of a design control; evidence is reproducible."""

from __future__ import annotations

import filecmp
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import evidence  # noqa: E402

REPO = HERE.parents[2]
PLATFORM = "terraform/modules/platform"

# (test id, file, text to find (exactly once), replacement, control that must fail)
MUTATIONS = [
    ("bucket_outside_region", f"{PLATFORM}/storage.tf",
     "location                    = upper(var.region)", 'location                    = "US"', "RESIDENCY-EUROPE-WEST3"),
    ("environment_region_moved", "terraform/environments/production/terraform.tfvars",
     'region                    = "europe-west3"', 'region                    = "europe-west1"', "RESIDENCY-EUROPE-WEST3"),
    ("topic_stored_anywhere", f"{PLATFORM}/pubsub.tf",
     "allowed_persistence_regions = [var.region]\n  }\n\n  depends_on = [google_kms_crypto_key_iam_member.service_agents]\n}\n\nresource \"google_pubsub_topic\" \"dead_letter\"",
     "allowed_persistence_regions = [\"us-east1\"]\n  }\n\n  depends_on = [google_kms_crypto_key_iam_member.service_agents]\n}\n\nresource \"google_pubsub_topic\" \"dead_letter\"",
     "RESIDENCY-EUROPE-WEST3"),
    ("backups_under_30", f"{PLATFORM}/sql.tf", "retained_backups = 30", "retained_backups = 14", "SQL-BACKUP-RETENTION"),
    ("pitr_off", f"{PLATFORM}/sql.tf", "point_in_time_recovery_enabled = true", "point_in_time_recovery_enabled = false",
     "SQL-HA-BACKUP-PITR-CMEK-TLS"),
    ("backup_window_moved", f"{PLATFORM}/sql.tf", 'start_time                     = "02:00"',
     'start_time                     = "05:00"', "SQL-HA-BACKUP-PITR-CMEK-TLS"),
    ("sql_zonal", f"{PLATFORM}/sql.tf", 'availability_type           = "REGIONAL"',
     'availability_type           = "ZONAL"', "SQL-HA-BACKUP-PITR-CMEK-TLS"),
    ("sql_public_ip", f"{PLATFORM}/sql.tf", "ipv4_enabled                                  = false",
     "ipv4_enabled                                  = true", "SQL-HA-BACKUP-PITR-CMEK-TLS"),
    ("scratch_instance_public", f"{PLATFORM}/sql.tf",
     "      ipv4_enabled    = false\n      private_network = google_compute_network.vpc.id\n      ssl_mode        = \"ENCRYPTED_ONLY\"",
     "      ipv4_enabled    = true\n      private_network = google_compute_network.vpc.id\n      ssl_mode        = \"ENCRYPTED_ONLY\"",
     "SQL-HA-BACKUP-PITR-CMEK-TLS"),
    ("restore_anywhere", f"{PLATFORM}/sql.tf",
     '    expression = "resource.name == \\"projects/${var.project_id}/instances/${google_sql_database_instance.restore_check.name}\\""',
     '    expression = "resource.name.startsWith(\\"projects/${var.project_id}/instances/\\")"', "IAM-DESIGN-TABLE"),
    ("redis_basic_tier", f"{PLATFORM}/redis.tf", 'tier                    = "STANDARD_HA"',
     'tier                    = "BASIC"', "REDIS-STANDARD-AUTH-TLS"),
    ("key_rotates_yearly", f"{PLATFORM}/kms.tf", 'kms_rotation_period = "7776000s"',
     'kms_rotation_period = "31536000s"', "KMS-HSM-ROTATION-90D"),
    ("key_in_software", f"{PLATFORM}/kms.tf", 'protection_level = "HSM"', 'protection_level = "SOFTWARE"',
     "KMS-HSM-ROTATION-90D"),
    ("service_ingress_all", "terraform/modules/http-service/main.tf",
     'ingress              = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"', 'ingress              = "INGRESS_TRAFFIC_ALL"',
     "RUN-NOT-PUBLIC"),
    ("push_service_all_users", "terraform/modules/push-service/main.tf",
     'member   = "serviceAccount:${var.push_service_account_email}"', 'member   = "allUsers"', "RUN-NOT-PUBLIC"),
    ("concurrency_raised", "terraform/modules/http-service/variables.tf", "default     = 80", "default     = 250",
     "RUN-SCALING"),
    ("scale_to_zero", "terraform/modules/http-service/variables.tf",
     'description = "Minimum warm instances."\n  type        = number\n  default     = 1',
     'description = "Minimum warm instances."\n  type        = number\n  default     = 0', "RUN-SCALING"),
    ("wildcard_principal", f"{PLATFORM}/wif.tf", "/attribute.repository/${var.github_repository}", "/*",
     "IAM-NO-WILDCARD"),
    ("public_bucket", f"{PLATFORM}/storage.tf",
     'member = "serviceAccount:${google_service_account.api.email}"', 'member = "allAuthenticatedUsers"',
     "IAM-NO-WILDCARD"),
    ("developers_editor", f"{PLATFORM}/iam.tf", '"roles/browser",', '"roles/editor",', "IAM-NO-PRIMITIVE-ROLES"),
    ("developers_write_db", f"{PLATFORM}/iam.tf", '"roles/run.viewer",', '"roles/cloudsql.client",',
     "IAM-DESIGN-TABLE"),
    ("secret_for_developers", f"{PLATFORM}/secrets.tf",
     'member    = "serviceAccount:${google_service_account.api.email}"', 'member    = "group:${var.developers_group}"',
     "SECRETS-FIVE-CMEK-AUDITED"),
    ("secret_missing", f"{PLATFORM}/locals.tf", '"OPENAI_API_KEY", "MAILGUN_API_KEY"]', '"MAILGUN_API_KEY"]',
     "SECRETS-FIVE-CMEK-AUDITED"),
    ("push_without_oidc", "terraform/modules/push-service/main.tf",
     "    oidc_token {\n      service_account_email = var.push_service_account_email\n      audience              = local.push_audience\n    }\n",
     "", "PUBSUB-PUSH-OIDC-DLQ"),
    ("push_endless_retries", f"{PLATFORM}/functions.tf", "max_delivery_attempts      = 5",
     "max_delivery_attempts      = 100", "PUBSUB-PUSH-OIDC-DLQ"),
    ("ingress_8080_opened", f"{PLATFORM}/network.tf",
     'ports    = ["443"]\n  }\n  source_ranges = [local.proxy_only_cidr]',
     'ports    = ["443", "8080"]\n  }\n  source_ranges = [local.proxy_only_cidr]', "FIREWALL-443-EGRESS-ALLOWLIST"),
    ("ssh_not_denied", f"{PLATFORM}/network.tf", 'ports    = ["22", "3389"]', 'ports    = ["3389"]',
     "FIREWALL-443-EGRESS-ALLOWLIST"),
    ("egress_any_port", f"{PLATFORM}/network.tf", 'ports    = ["5432"]', 'ports    = ["0-65535"]',
     "FIREWALL-443-EGRESS-ALLOWLIST"),
    ("http_listener", f"{PLATFORM}/lb.tf", 'port_range            = "443"', 'port_range            = "80"',
     "LB-HTTPS-URL-MAP"),
    ("route_dropped", f"{PLATFORM}/locals.tf", 'paths   = ["/v1/me", "/v1/me/*"]', 'paths   = ["/v1/me"]',
     "LB-HTTPS-URL-MAP"),
    ("sqli_rule_removed", f"{PLATFORM}/armor.tf", '    1000 = "sqli-v33-stable"\n', "", "ARMOR-OWASP-RATE-BAN"),
    ("archive_kept_30_days", f"{PLATFORM}/storage.tf", "age = 365", "age = 30", "STORAGE-ARCHIVE"),
    ("archive_public_access", f"{PLATFORM}/storage.tf", 'public_access_prevention    = "enforced"',
     'public_access_prevention    = "inherited"', "STORAGE-ARCHIVE"),
    ("archive_versions_kept_a_month", f"{PLATFORM}/storage.tf", "days_since_noncurrent_time = 1",
     "days_since_noncurrent_time = 30", "STORAGE-ARCHIVE"),
    ("backups_kept_a_year", f"{PLATFORM}/backups.tf", "age = 30", "age = 365", "STORAGE-ARCHIVE"),
    ("backups_unversioned", f"{PLATFORM}/backups.tf", "versioning {\n    enabled = true",
     "versioning {\n    enabled = false", "STORAGE-ARCHIVE"),
    ("backups_without_cmek", f"{PLATFORM}/backups.tf",
     '  encryption {\n    default_kms_key_name = google_kms_crypto_key.keys["storage"].id\n  }\n', "", "STORAGE-ARCHIVE"),
    ("push_to_unrouted_path", f"{PLATFORM}/locals.tf", 'path = "/pubsub/push"', 'path = "/pubsub/sleep-log"',
     "PUBSUB-PUSH-OIDC-DLQ"),
    ("audit_push_to_unrouted_path", f"{PLATFORM}/locals.tf", 'path = "/pubsub/audit"', 'path = "/pubsub/audit-events"',
     "PUBSUB-PUSH-OIDC-DLQ"),
    ("push_audience_not_told", "terraform/modules/push-service/main.tf",
     "    PUSH_AUDIENCE        = local.push_audience\n", '    PUSH_AUDIENCE        = "https://example.invalid"\n',
     "PUBSUB-PUSH-OIDC-DLQ"),
    ("kms_key_not_wired", f"{PLATFORM}/locals.tf",
     'kms       = { KMS_KEY_NAME = google_kms_crypto_key.keys["envelope"].id }', "kms       = {}", "RUN-ENV-WIRED"),
    ("pubsub_project_not_wired", f"{PLATFORM}/locals.tf", "pubsub    = { PUBSUB_PROJECT = var.project_id }",
     "pubsub    = {}", "RUN-ENV-WIRED"),
    ("archive_bucket_not_given_to_privacy", f"{PLATFORM}/locals.tf",
     "      env     = { ARCHIVE_BUCKET = google_storage_bucket.archive.name }\n", "", "RUN-ENV-WIRED"),
    ("stale_variable_set", f"{PLATFORM}/locals.tf", "        SQL_INSTANCE           = google_sql_database_instance.main.name\n",
     "        SQL_INSTANCE           = google_sql_database_instance.main.name\n        RPO_SECONDS            = \"3600\"\n",
     "RUN-ENV-WIRED"),
    ("secret_given_as_plain_value", f"{PLATFORM}/locals.tf", '    RUST_LOG             = "info"\n',
     '    RUST_LOG             = "info"\n    REDIS_URL            = "redis://10.0.0.3:6379"\n', "RUN-ENV-WIRED"),
    ("port_set_by_terraform", f"{PLATFORM}/locals.tf", '    RUST_LOG             = "info"\n',
     '    RUST_LOG             = "info"\n    PORT                 = "9090"\n', "RUN-ENV-WIRED"),
    ("perimeter_without_sql", f"{PLATFORM}/vpcsc.tf", '    "sqladmin.googleapis.com",\n', "", "VPC-SC-PERIMETER"),
    ("critical_to_slack_only", f"{PLATFORM}/monitoring.tf",
     "CRITICAL = [google_monitoring_notification_channel.pager.id, google_monitoring_notification_channel.slack.id]",
     "CRITICAL = [google_monitoring_notification_channel.slack.id]", "MONITORING-ALERTS-BY-SEVERITY"),
    ("latency_threshold_raised", f"{PLATFORM}/monitoring.tf", "threshold_value = 2000", "threshold_value = 5000",
     "MONITORING-ALERTS-BY-SEVERITY"),
    ("schedule_in_local_time", "scheduler/retention.yaml", "time_zone: Etc/UTC", "time_zone: Europe/Berlin",
     "SCHEDULER-JOBS"),
    ("schedule_unknown_job", "scheduler/log-archiver.yaml", "job: log-archiver", "job: log-archive",
     "SCHEDULER-JOBS"),
]


def copy_tree(tmp: Path) -> Path:
    for part in ("terraform", "scheduler"):
        shutil.copytree(REPO / part, tmp / part, ignore=shutil.ignore_patterns("evidence", ".terraform*"))
    return tmp


def check(root: Path, capsys, env: str = "production", sources: Path = REPO) -> tuple[int, str]:
    rc = evidence.main(["check", "--terraform", str(root / "terraform"), "--scheduler", str(root / "scheduler"),
                        "--sources", str(sources), "--env", env])
    return rc, capsys.readouterr().out


def test_committed_terraform_passes_every_control(capsys):
    rc, out = check(REPO, capsys, "staging")
    assert rc == 0, out
    rc, out = check(REPO, capsys, "production")
    assert rc == 0, out
    assert out.count("PASS production") == len(evidence.compliance.CONTROLS)


@pytest.mark.parametrize("case", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_weakened_control_is_reported_by_name(case, tmp_path, capsys):
    _, rel, old, new, control = case
    root = copy_tree(tmp_path)
    path = root / rel
    text = path.read_text()
    assert text.count(old) == 1, f"mutation anchor must occur once in {rel}: {old!r}"
    path.write_text(text.replace(old, new))
    rc, out = check(root, capsys)
    assert rc == 1, out
    assert f"FAIL production {control}:" in out, out


def test_evidence_regenerates_byte_identical(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    assert evidence.main(["generate", "--out", str(first)]) == 0
    assert evidence.main(["generate", "--out", str(second)]) == 0
    capsys.readouterr()
    assert_same_tree(first, second)


def test_committed_evidence_matches_the_terraform(tmp_path, capsys):
    out = tmp_path / "evidence"
    assert evidence.main(["generate", "--out", str(out)]) == 0
    capsys.readouterr()
    assert_same_tree(out, REPO / "terraform" / "evidence", hint="run: scripts/iac-check.sh --update-evidence")


def assert_same_tree(a: Path, b: Path, hint: str = "") -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "README.md")
    assert files_a == files_b, hint
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    assert not mismatch and not errors, f"differs: {mismatch or errors} {hint}"


def test_evidence_lists_every_function_in_knative_form(tmp_path, capsys):
    assert evidence.main(["generate", "--out", str(tmp_path), "--env", "production"]) == 0
    capsys.readouterr()
    deploy = tmp_path / "production" / "cloudrun-deploy"
    services = {"auth", "sleep-diary", "log-ingestion", "questionnaire-scoring", "privacy", "sleep-analysis"}
    jobs = {"migrate", "backup-verification", "log-archiver", "retention"}
    assert {p.parent.name for p in deploy.glob("*/service.yaml")} == services
    assert {p.parent.name for p in deploy.glob("*/job.yaml")} == jobs
    auth = evidence.artifacts.yaml.safe_load((deploy / "auth" / "service.yaml").read_text())
    annotations = auth["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "1"
    assert annotations["autoscaling.knative.dev/maxScale"] == "100"
    assert auth["spec"]["template"]["spec"]["containerConcurrency"] == 80
    assert auth["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal-and-cloud-load-balancing"
