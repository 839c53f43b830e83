"""Controls from DESIGN.md, checked against the evaluated Terraform of one environment.

Each control returns the list of its findings; an empty list is a pass. A value that stays
unknown until apply never counts as compliant where the control needs the value itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import envwiring
from model import Environment, first
from tfeval import Unknown, render

REGION = "europe-west3"
NINETY_DAYS = 90 * 24 * 3600

# Resource types that exist only globally; they carry no data at rest.
GLOBAL_TYPES = {
    "google_privileged_access_manager_entitlement",
}

OWASP_RULES = [
    "sqli-v33-stable", "xss-v33-stable", "lfi-v33-stable", "rfi-v33-stable", "rce-v33-stable",
    "methodenforcement-v33-stable", "scannerdetection-v33-stable", "protocolattack-v33-stable",
    "sessionfixation-v33-stable",
]

URL_MAP = {
    "/v1/auth/*": "auth",
    "/v1/sleep-logs": "sleep-diary",
    "/v1/sleep-logs/*": "sleep-diary",
    "/v1/imports/*": "log-ingestion",
    "/v1/questionnaires": "questionnaire-scoring",
    "/v1/questionnaires/*": "questionnaire-scoring",
    "/v1/questionnaire-responses": "questionnaire-scoring",
    "/v1/questionnaire-responses/*": "questionnaire-scoring",
    "/v1/sleep-window": "sleep-analysis",
    "/v1/me": "privacy",
    "/v1/me/*": "privacy",
}

SECRETS = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "OPENAI_API_KEY", "MAILGUN_API_KEY"]
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")


def seconds(value) -> float | None:
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?s", value):
        return float(value[:-1])
    return None


def _locations(attrs, path=""):
    """Every (path, value) in a resource whose key names a location."""
    for k, v in attrs.items():
        p = f"{path}.{k}" if path else k
        if k in ("region", "location", "location_id", "allowed_persistence_regions"):
            for item in v if isinstance(v, list) else [v]:
                yield p, item
        elif isinstance(v, dict):
            yield from _locations(v, p)
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    yield from _locations(item, f"{p}[{i}]")


def residency(env: Environment, _):
    out = []
    if env.provider_region != REGION:
        out.append(f"provider region is {render(env.provider_region)}")
    for r in env.resources:
        for path, loc in _locations(r.attrs):
            if isinstance(loc, Unknown):
                out.append(f"{r.address}: {path} is not known before apply")
            elif str(loc).lower() == "global" and r.type in GLOBAL_TYPES:
                continue
            elif str(loc).lower() != REGION:
                out.append(f"{r.address}: {path} = {loc}")
    policies = {render(p.attrs["name"]).rsplit("/", 1)[-1]: p for p in env.of_type("google_org_policy_policy")}
    loc_policy = policies.get("gcp.resourceLocations")
    allowed = render(first(first(first(loc_policy.attrs.get("spec")).get("rules")).get("values")).get("allowed_values")) if loc_policy else None
    if allowed != [f"in:{REGION}-locations"]:
        out.append(f"organisation policy gcp.resourceLocations must allow only in:{REGION}-locations, has {allowed}")
    return out


def _is_restore_check(r) -> bool:
    """The backup-verification scratch instance: holds only a restored copy of a backup."""
    return render(first(r.attrs.get("settings")).get("user_labels", {})).get("role") == "restore-check"


def cloudsql(env: Environment, _):
    out = []
    instances = env.of_type("google_sql_database_instance")
    if not [r for r in instances if not _is_restore_check(r)]:
        return ["no Cloud SQL instance"]
    for r in instances:
        s = first(r.attrs.get("settings"))
        b = first(s.get("backup_configuration"))
        ip = first(s.get("ip_configuration"))
        if not r.attrs.get("encryption_key_name"):
            out.append(f"{r.address}: no CMEK (encryption_key_name)")
        if ip.get("ipv4_enabled") is not False or not ip.get("private_network"):
            out.append(f"{r.address}: must have a private IP only")
        if ip.get("ssl_mode") not in ("ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"):
            out.append(f"{r.address}: TLS not required (ssl_mode {ip.get('ssl_mode')})")
        if _is_restore_check(r):
            continue
        if s.get("availability_type") != "REGIONAL":
            out.append(f"{r.address}: availability_type {s.get('availability_type')} (HA needs REGIONAL)")
        if not b.get("enabled") or b.get("start_time") != "02:00":
            out.append(f"{r.address}: daily backup at 02:00 required (enabled={b.get('enabled')}, start_time={b.get('start_time')})")
        if b.get("point_in_time_recovery_enabled") is not True:
            out.append(f"{r.address}: point-in-time recovery is off")
        days = b.get("transaction_log_retention_days")
        if not isinstance(days, int) or days < 7:
            out.append(f"{r.address}: transaction logs kept {days} days, need 7 for PITR")
    return out


def backup_retention(env: Environment, _):
    out = []
    for r in env.of_type("google_sql_database_instance"):
        if _is_restore_check(r):
            continue
        b = first(first(r.attrs.get("settings")).get("backup_configuration"))
        ret = first(b.get("backup_retention_settings"))
        retained = ret.get("retained_backups")
        if ret.get("retention_unit", "COUNT") != "COUNT" or not isinstance(retained, int) or retained < 30:
            out.append(f"{r.address}: backups retained {retained}, need at least 30")
    return out


def memorystore(env: Environment, _):
    out = []
    redis = env.of_type("google_redis_instance")
    if not redis:
        return ["no Memorystore instance"]
    # The session and rate-limit Lua scripts touch several keys at once, which Redis Cluster
    # refuses across slots: one primary (Memorystore for Redis, Standard tier) only.
    for r in env.of_type("google_redis_cluster"):
        out.append(f"{r.address}: Redis Cluster; the Lua scripts need a single primary")
    for r in redis:
        a = r.attrs
        if a.get("tier") != "STANDARD_HA":
            out.append(f"{r.address}: tier {a.get('tier')}, design asks for Standard")
        if a.get("auth_enabled") is not True:
            out.append(f"{r.address}: AUTH is off")
        if a.get("transit_encryption_mode") != "SERVER_AUTHENTICATION":
            out.append(f"{r.address}: in-transit encryption is off")
        if not a.get("customer_managed_key"):
            out.append(f"{r.address}: no CMEK")
        if a.get("connect_mode") != "PRIVATE_SERVICE_ACCESS":
            out.append(f"{r.address}: not on private service access")
    return out


def kms(env: Environment, _):
    out = []
    keys = env.of_type("google_kms_crypto_key")
    if not keys:
        return ["no Cloud KMS keys"]
    for r in keys:
        period = seconds(r.attrs.get("rotation_period"))
        if period is None or period > NINETY_DAYS:
            out.append(f"{r.address}: rotation_period {r.attrs.get('rotation_period')} is slower than 90 days")
        level = first(r.attrs.get("version_template")).get("protection_level")
        if level != "HSM":
            out.append(f"{r.address}: protection level {level}, must be HSM")
    return out


def _services(env):
    return [f for f in env.functions() if f["kind"] != "job"]


def _lb_backends(env) -> set:
    return {first(n.attrs.get("cloud_run")).get("service") for n in env.of_type("google_compute_region_network_endpoint_group")}


def cloud_run_scaling(env: Environment, _):
    out = []
    for f in _services(env):
        t = first(f["resource"].attrs.get("template"))
        sc = first(t.get("scaling"))
        if not isinstance(sc.get("min_instance_count"), int) or sc["min_instance_count"] < 1:
            out.append(f"{f['name']}: min instances {sc.get('min_instance_count')}, need 1")
        if sc.get("max_instance_count") != 100:
            out.append(f"{f['name']}: max instances {sc.get('max_instance_count')}, design says 100")
        if t.get("max_instance_request_concurrency") != 80:
            out.append(f"{f['name']}: concurrency {t.get('max_instance_request_concurrency')}, design says 80")
    return out


def cloud_run_private(env: Environment, _):
    out = []
    backends = _lb_backends(env)
    armored = all(b.attrs.get("security_policy") for b in env.of_type("google_compute_region_backend_service"))
    for f in _services(env):
        a = f["resource"].attrs
        name = f["name"]
        ingress = a.get("ingress", "INGRESS_TRAFFIC_ALL")
        if ingress not in ("INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "INGRESS_TRAFFIC_INTERNAL_ONLY"):
            out.append(f"{name}: ingress {ingress} lets the internet call the service without the load balancer")
        if a.get("invoker_iam_disabled") is True and not (name in backends and armored and ingress == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"):
            out.append(f"{name}: invoker check disabled but the service is not only reachable through the Cloud Armor load balancer")
    for g in env.iam_members():
        if g["scope"] in ("cloud_run_v2_service", "cloud_run_v2_job") and g["member"] in PUBLIC_MEMBERS:
            out.append(f"{g['resource']}: {g['role']} granted to {g['member']} (public Cloud Run)")
    return out


def cloud_run_network(env: Environment, _):
    out = []
    for f in env.functions():
        t = first(f["resource"].attrs.get("template"))
        if f["kind"] == "job":
            t = first(t.get("template"))
        vpc = first(t.get("vpc_access"))
        if not vpc.get("connector") or vpc.get("egress") != "ALL_TRAFFIC":
            out.append(f"{f['name']}: egress must leave through the VPC connector (ALL_TRAFFIC) to reach Cloud NAT")
        sa = t.get("service_account")
        if not sa or (isinstance(sa, str) and sa.endswith("-compute@developer.gserviceaccount.com")):
            out.append(f"{f['name']}: runs without its own service account")
    return out


def iam_wildcards(env: Environment, _):
    out = []
    for g in env.iam_members():
        member, role = str(g["member"]), str(g["role"])
        if g["member"] in PUBLIC_MEMBERS or "*" in member:
            out.append(f"{g['address']}: wildcard member {member}")
        if "*" in role:
            out.append(f"{g['address']}: wildcard role {role}")
    for r in env.resources:
        if r.type.endswith("_iam_binding") or r.type.endswith("_iam_policy"):
            out.append(f"{r.address}: authoritative IAM resources are not used here; grant with *_iam_member")
    return out


def iam_primitive(env: Environment, _):
    return [f"{g['address']}: primitive role {g['role']} for {g['member']}" for g in env.iam_members() if g["role"] in PRIMITIVE_ROLES]


def iam_design(env: Environment, _):
    out = []
    grants = env.iam_members()
    emails = {s.attrs["account_id"]: s.attrs["email"] for s in env.of_type("google_service_account")}

    def roles_of(member, scope=None):
        return {g["role"] for g in grants if g["member"] == member and (scope is None or g["scope"] == scope)}

    api = f"serviceAccount:{emails.get('dta-wide-api')}"
    for role in ("roles/cloudsql.client", "roles/logging.logWriter"):
        if role not in roles_of(api, "project"):
            out.append(f"dta-wide-api lacks {role}")
    if "roles/secretmanager.secretAccessor" not in roles_of(api, "secret_manager_secret"):
        out.append("dta-wide-api lacks Secret Accessor on its secrets")
    ci = f"serviceAccount:{emails.get('ci-cd')}"
    if "roles/run.developer" not in roles_of(ci):
        out.append("ci-cd lacks the Cloud Run deployer role")
    if "roles/artifactregistry.writer" not in roles_of(ci):
        out.append("ci-cd lacks Artifact Registry writer")
    writers = {g["member"] for g in grants if g["role"] in ("roles/cloudsql.client", "roles/cloudsql.admin", "roles/cloudsql.editor")}
    if writers - {api}:
        out.append(f"only the API may connect to the database; also granted to {sorted(writers - {api})}")
    dba = f"serviceAccount:{emails.get('db-admin')}"
    if roles_of(dba) - {"roles/cloudsql.viewer"}:
        out.append(f"db-admin is read-only; has {sorted(roles_of(dba))}")
    scratch = [r.attrs["name"] for r in env.of_type("google_sql_database_instance") if _is_restore_check(r)]
    restoring = {r.attrs["name"] for r in env.of_type("google_project_iam_custom_role")
                 if "cloudsql.instances.restoreBackup" in r.attrs.get("permissions", [])}
    restoring |= {"roles/cloudsql.admin", "roles/cloudsql.editor"}
    for g in grants:
        if g["role"] in restoring and not any(f'/instances/{n}"' in str(g.get("condition", "")) for n in scratch):
            out.append(f"{g['address']}: restoring backups must be limited to the restore-check instance by an IAM condition")
    if not env.of_type("google_privileged_access_manager_entitlement"):
        out.append("database access for db-admins needs an approval workflow (Privileged Access Manager)")
    read_only = re.compile(r"roles/(browser|[a-z]+\.(viewer|reader))$")
    for g in grants:
        if g["member"].startswith("group:") and "developers" in g["member"] and not read_only.match(str(g["role"])):
            out.append(f"developers must be read-only; {g['member']} has {g['role']}")
    return out


def secrets(env: Environment, _):
    out = []
    found = {s.attrs["secret_id"]: s for s in env.of_type("google_secret_manager_secret")}
    for name in SECRETS:
        if name not in found:
            out.append(f"secret {name} is missing")
    api = next((f"serviceAccount:{s.attrs['email']}" for s in env.of_type("google_service_account") if s.attrs["account_id"] == "dta-wide-api"), None)
    for g in env.iam_members():
        if g["scope"] == "secret_manager_secret" and g["member"] != api:
            out.append(f"{g['resource']}: {g['member']} may read it; only the API service account may")
    for sid, s in found.items():
        replicas = first(first(s.attrs.get("replication")).get("user_managed")).get("replicas", [])
        if not replicas:
            out.append(f"{sid}: replication must be user-managed in {REGION}")
        for rep in replicas:
            if not first(rep.get("customer_managed_encryption")).get("kms_key_name"):
                out.append(f"{sid}: replica without CMEK")
        if render(s.attrs.get("labels", {}).get("keep-versions")) != "3":
            out.append(f"{sid}: keep-versions label must record the 3-version rule")
    if "secretmanager.googleapis.com" not in {a.attrs["service"] for a in env.of_type("google_project_iam_audit_config")}:
        out.append("secret access is not audited (data-access audit config for secretmanager.googleapis.com)")
    return out


def _routes(crate: Path) -> set[str]:
    """Paths the crate routes POST requests to: `.post("/path", h)`, or `.post(NAME, h)` with
    `const NAME: &str = "/path"` in the crate."""
    texts = [envwiring.strip_tests(p.read_text()) for p in envwiring.rust_files(crate)]
    consts = {m.group(1): m.group(2) for text in texts
              for m in re.finditer(r'\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:\'static\s+)?str\s*=\s*"(/[^"]*)"', text)}
    found: set[str] = set()
    for text in texts:
        for m in re.finditer(r'\.post\(\s*(?:"(/[^"]*)"|(?:[a-z_]+::)*([A-Z][A-Z0-9_]*)\s*,)', text):
            found.add(m.group(1) or consts.get(m.group(2), ""))
    return found - {""}


def pubsub_oidc(env: Environment, ctx):
    out = []
    services = {f["name"]: f for f in env.functions() if f["kind"] == "push-service"}
    for s in env.of_type("google_pubsub_subscription"):
        push = first(s.attrs.get("push_config"))
        if not push:
            continue
        oidc = first(push.get("oidc_token"))
        if not oidc.get("service_account_email"):
            out.append(f"{s.address}: push without an OIDC token")
        # The service must serve the push path and expect exactly this audience and signer.
        fn = render(s.attrs.get("labels", {})).get("function")
        if fn in services:
            endpoint = str(render(push.get("push_endpoint")))
            path = "/" + endpoint.rsplit("}", 1)[-1].lstrip("/") if "}" in endpoint else "/" + endpoint.split("/", 3)[-1]
            if path not in _routes(Path(ctx["sources"]) / "functions" / fn):
                out.append(f"{s.address}: pushes to {path}, which functions/{fn} does not route")
            plain = {e.get("name"): e.get("value") for e in _container(services[fn]).get("env", []) if "value_source" not in e}
            if render(plain.get("PUSH_AUDIENCE")) != render(oidc.get("audience")):
                out.append(f"{s.address}: token audience {render(oidc.get('audience'))} is not the PUSH_AUDIENCE {render(plain.get('PUSH_AUDIENCE'))} of {fn}")
            if render(plain.get("PUSH_SERVICE_ACCOUNT")) != render(oidc.get("service_account_email")):
                out.append(f"{s.address}: token signer {render(oidc.get('service_account_email'))} is not the PUSH_SERVICE_ACCOUNT of {fn}")
        dl = first(s.attrs.get("dead_letter_policy"))
        if not dl.get("dead_letter_topic"):
            out.append(f"{s.address}: push subscription without dead-letter topic")
        elif dl.get("max_delivery_attempts") != 5:
            out.append(f"{s.address}: max_delivery_attempts {dl.get('max_delivery_attempts')}, expected 5")
    return out


def pubsub_topics(env: Environment, _):
    out = []
    topics = {t.attrs["name"]: t for t in env.of_type("google_pubsub_topic")}
    for name in ("sleep-log", "questionnaire", "safety", "audit"):
        if name not in topics:
            out.append(f"topic {name} is missing")
        if f"{name}-dead-letter" not in topics:
            out.append(f"topic {name} has no dead-letter topic")
    for name, t in topics.items():
        if not t.attrs.get("kms_key_name"):
            out.append(f"topic {name}: no CMEK")
        if not first(t.attrs.get("message_storage_policy")).get("allowed_persistence_regions"):
            out.append(f"topic {name}: message storage not restricted to {REGION}")
    return out


def _ports(rule_blocks):
    return [(b.get("protocol"), tuple(b.get("ports", []))) for b in rule_blocks]


def firewall(env: Environment, _):
    out = []
    rules = env.of_type("google_compute_firewall")
    deny_ssh = deny_all_in = deny_all_out = False
    for r in rules:
        a = r.attrs
        direction = a.get("direction", "INGRESS")
        if "allow" in a:
            for proto, ports in _ports(a["allow"]):
                if direction == "INGRESS" and (proto != "tcp" or ports != ("443",)):
                    out.append(f"{a['name']}: ingress allows {proto} {list(ports) or 'all ports'}; only tcp 443 is allowed")
                if direction == "EGRESS" and (proto != "tcp" or not ports or set(ports) - {"5432", "6378", "6379", "443"}):
                    out.append(f"{a['name']}: egress allows {proto} {list(ports) or 'all ports'}; allow-list is 5432, 6378/6379, 443")
        else:
            denied = _ports(a.get("deny", []))
            if direction == "INGRESS" and any(p == "tcp" and {"22", "3389"} <= set(ports) for p, ports in denied):
                deny_ssh = True
            if any(p == "all" for p, _ in denied) and "0.0.0.0/0" in (a.get("source_ranges", []) + a.get("destination_ranges", [])):
                if direction == "INGRESS":
                    deny_all_in = True
                else:
                    deny_all_out = True
        if not a.get("log_config"):
            out.append(f"{a['name']}: firewall logging is off")
    if not deny_ssh:
        out.append("no rule denies SSH (22) and RDP (3389)")
    if not deny_all_in:
        out.append("no deny-all ingress rule")
    if not deny_all_out:
        out.append("no deny-all egress rule")
    nat = env.one("google_compute_router_nat")
    if not nat or nat.attrs.get("nat_ip_allocate_option") != "MANUAL_ONLY" or not first(nat.attrs.get("log_config")).get("enable"):
        out.append("Cloud NAT must use a static IP (MANUAL_ONLY) with logging")
    return out


def load_balancer(env: Environment, _):
    out = []
    for fr in env.of_type("google_compute_forwarding_rule") + env.of_type("google_compute_global_forwarding_rule"):
        if str(fr.attrs.get("port_range")) != "443":
            out.append(f"{fr.address}: listens on {fr.attrs.get('port_range')}; HTTPS 443 only")
        if "https_proxy" not in str(render(fr.attrs.get("target"))):
            out.append(f"{fr.address}: target is not an HTTPS proxy")
    for p in env.of_type("google_compute_region_ssl_policy"):
        if p.attrs.get("min_tls_version") != "TLS_1_2" or p.attrs.get("profile") not in ("RESTRICTED", "MODERN", "CUSTOM"):
            out.append(f"{p.address}: TLS policy weaker than TLS 1.2 RESTRICTED")
    for b in env.of_type("google_compute_region_backend_service"):
        if not b.attrs.get("security_policy"):
            out.append(f"{b.address}: no Cloud Armor policy")
    url_map = env.one("google_compute_region_url_map")
    routes = {}
    if url_map:
        for pm in url_map.attrs.get("path_matcher", []):
            for rule in pm.get("path_rule", []):
                service = re.search(r'functions\["([^"]+)"\]', str(render(rule.get("service"))))
                for path in rule.get("paths", []):
                    routes[path] = service.group(1) if service else None
    for path, fn in URL_MAP.items():
        if routes.get(path) != fn:
            out.append(f"URL map: {path} goes to {routes.get(path)}, expected {fn}")
    return out


def cloud_armor(env: Environment, _):
    out = []
    rules = env.of_type("google_compute_region_security_policy_rule") + env.of_type("google_compute_security_policy_rule")
    exprs = " ".join(str(first(first(r.attrs.get("match")).get("expr")).get("expression", "")) for r in rules)
    for name in OWASP_RULES:
        if f"'{name}'" not in exprs:
            out.append(f"OWASP preconfigured rule {name} is missing")
    for r in rules:
        if "evaluatePreconfiguredWaf" in str(first(first(r.attrs.get("match")).get("expr")).get("expression", "")) and not str(r.attrs.get("action", "")).startswith("deny"):
            out.append(f"{r.address}: WAF rule does not deny (action {r.attrs.get('action')})")
        if r.attrs.get("preview") is True:
            out.append(f"{r.address}: rule is in preview only")
    if not any(r.attrs.get("action") == "rate_based_ban" for r in rules):
        out.append("no rate-based ban rule")
    return out


# Bucket purpose label -> (storage class or None for any, days after which objects are deleted)
BUCKETS = {
    "log-archive": ("NEARLINE", 365),
    "backup-drill": (None, 30),
}
# A replaced or deleted version may outlive its object by at most this many days.
NONCURRENT_DAYS_MAX = 7


def storage(env: Environment, _):
    out = []
    buckets = env.of_type("google_storage_bucket")
    purposes = {render(b.attrs.get("labels", {})).get("purpose") for b in buckets}
    for purpose in BUCKETS:
        if purpose not in purposes:
            out.append(f"no bucket labelled purpose={purpose}")
    for b in buckets:
        a = b.attrs
        purpose = render(a.get("labels", {})).get("purpose")
        if purpose not in BUCKETS:
            out.append(f"{b.address}: purpose label {purpose!r} is none of {sorted(BUCKETS)}")
            continue
        storage_class, days = BUCKETS[purpose]
        if storage_class and a.get("storage_class") != storage_class:
            out.append(f"{b.address}: storage class {a.get('storage_class')}, {purpose} is {storage_class.title()}")
        if a.get("uniform_bucket_level_access") is not True:
            out.append(f"{b.address}: uniform bucket-level access is off")
        if a.get("public_access_prevention") != "enforced":
            out.append(f"{b.address}: public access prevention not enforced")
        if not first(a.get("encryption")).get("default_kms_key_name"):
            out.append(f"{b.address}: no CMEK")
        rules = [(first(r.get("condition")), first(r.get("action")).get("type")) for r in a.get("lifecycle_rule", [])]
        ages = [c.get("age") for c, action in rules if action == "Delete" and c.get("age") is not None]
        if ages != [days]:
            out.append(f"{b.address}: objects must be deleted after {days} days by one lifecycle rule, has {ages}")
        if first(a.get("versioning")).get("enabled") is not True:
            out.append(f"{b.address}: versioning is off")
        noncurrent = [c.get("days_since_noncurrent_time") for c, action in rules if action == "Delete" and c.get("days_since_noncurrent_time") is not None]
        if not noncurrent or min(noncurrent) > NONCURRENT_DAYS_MAX:
            out.append(f"{b.address}: noncurrent versions must be deleted within {NONCURRENT_DAYS_MAX} days, has {noncurrent}")
    return out


def _container(f) -> dict:
    t = first(f["resource"].attrs.get("template"))
    if f["kind"] == "job":
        t = first(t.get("template"))
    return first(t.get("containers"))


def env_wiring(env: Environment, ctx):
    """Every variable a function's code reads is set for it (secrets by reference), or named
    with its reason in envwiring.NOT_SET; nothing is set that its code does not read."""
    out = []
    sources = Path(ctx["sources"])
    deployed = {f["name"]: f for f in env.functions()}
    crates = envwiring.deployed_crates(sources)
    for crate in crates:
        if crate not in deployed and crate not in envwiring.LOCAL_ONLY_CRATES:
            out.append(f"functions/{crate} is deployed by no Terraform and not listed as local-only")
    read_anywhere: set[str] = set()
    for name, f in sorted(deployed.items()):
        if name not in crates:
            out.append(f"{name}: no crate functions/{name}")
            continue
        reads, secret_names = envwiring.function_config(sources, name)
        read_anywhere |= set(reads)
        entries = _container(f).get("env", [])
        names = [e.get("name") for e in entries]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            out.append(f"{name}: {dup} is set twice")
        plain = {e.get("name") for e in entries if "value_source" not in e}
        for var, where in sorted(reads.items()):
            if var not in names and var not in envwiring.NOT_SET:
                out.append(f"{name}: {var} (read in {where}) is not set")
            if var in secret_names and var in plain:
                out.append(f"{name}: {var} is a secret but set as a plain value; use a Secret Manager reference")
        for var in sorted(set(names) - set(reads)):
            if var not in envwiring.SET_UNREAD:
                out.append(f"{name}: {var} is set but functions/{name} reads no such variable")
        for var in sorted(set(names) & set(envwiring.NOT_SET)):
            out.append(f"{name}: {var} is set, but envwiring.NOT_SET says it stays unset ({envwiring.NOT_SET[var]})")
    for var in sorted(set(envwiring.NOT_SET) - read_anywhere):
        out.append(f"envwiring.NOT_SET names {var}, which no deployed function reads")
    return out


def firestore(env: Environment, _):
    out = []
    for d in env.of_type("google_firestore_database"):
        a = d.attrs
        if a.get("point_in_time_recovery_enablement") != "POINT_IN_TIME_RECOVERY_ENABLED":
            out.append(f"{d.address}: PITR off")
        if not first(a.get("cmek_config")).get("kms_key_name"):
            out.append(f"{d.address}: no CMEK")
        if a.get("delete_protection_state") != "DELETE_PROTECTION_ENABLED":
            out.append(f"{d.address}: delete protection off")
    return out or ([] if env.of_type("google_firestore_database") else ["no Firestore database"])


def vpc_sc(env: Environment, _):
    p = env.one("google_access_context_manager_service_perimeter")
    if not p:
        return ["no VPC Service Controls perimeter"]
    status = first(p.attrs.get("status"))
    if not status:
        return ["perimeter is not enforced (no status block)"]
    missing = {"sqladmin.googleapis.com", "secretmanager.googleapis.com", "storage.googleapis.com",
               "firestore.googleapis.com", "pubsub.googleapis.com", "redis.googleapis.com"} - set(render(status.get("restricted_services", [])))
    return [f"perimeter does not restrict {sorted(missing)}"] if missing else []


ALERTS = {
    "API P95 latency": ("run.googleapis.com/request_latencies", 2000),
    "API error rate": ("response_code_class=\\\"5xx\\\"", 0.05),
    "DB connection pool": ("db_pool_utilization", 0.8),
    "Redis memory": ("redis.googleapis.com/stats/memory/usage_ratio", 0.9),
    "TLS certificate": ("time_until_ssl_cert_expires", 30),
    "Backup verification": ("backup-verification", None),
}


def monitoring(env: Environment, _):
    out = []
    channels = {c.address.rsplit(".", 1)[-1]: c.attrs.get("type") for c in env.of_type("google_monitoring_notification_channel")}
    policies = env.of_type("google_monitoring_alert_policy")
    for title, (needle, threshold) in ALERTS.items():
        match = [p for p in policies if str(p.attrs.get("display_name", "")).startswith(title)]
        if not match:
            out.append(f"alert '{title}' is missing")
            continue
        p = match[0]
        conds = p.attrs.get("conditions", [])
        text = repr(render(conds))
        if needle.replace("\\", "") not in text.replace("\\", ""):
            out.append(f"alert '{title}' does not watch {needle}")
        if threshold is not None:
            values = [first(c.get("condition_threshold")).get("threshold_value") for c in conds]
            promql = " ".join(str(first(c.get("condition_prometheus_query_language")).get("query", "")) for c in conds)
            if threshold not in values and not re.search(rf"[<>]\s*{re.escape(str(threshold))}\b", promql):
                out.append(f"alert '{title}' threshold is not {threshold}")
        severity = p.attrs.get("severity")
        if severity not in ("CRITICAL", "ERROR", "WARNING"):
            out.append(f"alert '{title}' has no severity")
        targets = " ".join(str(render(c)) for c in p.attrs.get("notification_channels", []))
        if not targets:
            out.append(f"alert '{title}' notifies nobody")
        if severity == "CRITICAL" and not any(channels.get(name) == "pagerduty" and f".{name}." in targets for name in channels):
            out.append(f"critical alert '{title}' does not page the on-call channel")
    return out


def scheduler(env: Environment, ctx):
    out = []
    jobs = {f["name"] for f in env.functions() if f["kind"] == "job"}
    services = {f["name"] for f in env.functions() if f["kind"] != "job"}
    for path in sorted(Path(ctx["scheduler_dir"]).glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        target = spec.get("target", {})
        if spec.get("time_zone") not in ("Etc/UTC", "UTC"):
            out.append(f"{path.name}: time_zone {spec.get('time_zone')}; schedules run in UTC")
        if not spec.get("service_account"):
            out.append(f"{path.name}: no service account")
        if target.get("kind") == "cloud-run-job" and target.get("job") not in jobs:
            out.append(f"{path.name}: job {target.get('job')} is not defined in Terraform")
        elif target.get("kind") == "http" and target.get("service") not in services:
            out.append(f"{path.name}: service {target.get('service')} is not defined in Terraform")
        elif target.get("kind") not in ("cloud-run-job", "http"):
            out.append(f"{path.name}: unknown target kind {target.get('kind')}")
    for j in env.of_type("google_cloud_scheduler_job"):
        t = first(j.attrs.get("http_target"))
        if not (first(t.get("oauth_token")).get("service_account_email") or first(t.get("oidc_token")).get("service_account_email")):
            out.append(f"{j.address}: unauthenticated scheduler call")
    return out


CONTROLS = [
    ("RESIDENCY-EUROPE-WEST3", "every resource and the org policy keep data in europe-west3", residency),
    ("SQL-BACKUP-RETENTION", "Cloud SQL keeps 30 daily backups", backup_retention),
    ("SQL-HA-BACKUP-PITR-CMEK-TLS", "Cloud SQL: regional HA, backup 02:00, PITR 7 days, CMEK, private IP, TLS", cloudsql),
    ("REDIS-STANDARD-AUTH-TLS", "Memorystore Standard tier with AUTH, TLS and CMEK", memorystore),
    ("KMS-HSM-ROTATION-90D", "KMS keys are HSM-backed and rotate at least every 90 days", kms),
    ("RUN-SCALING", "Cloud Run services: min 1, max 100, concurrency 80", cloud_run_scaling),
    ("RUN-NOT-PUBLIC", "no Cloud Run service is reachable except through the Cloud Armor load balancer or OIDC", cloud_run_private),
    ("RUN-EGRESS-IDENTITY", "functions egress through the VPC connector and run as their own account", cloud_run_network),
    ("IAM-NO-WILDCARD", "no wildcard or public IAM members or roles", iam_wildcards),
    ("IAM-NO-PRIMITIVE-ROLES", "no owner/editor/viewer roles", iam_primitive),
    ("IAM-DESIGN-TABLE", "IAM as in the design's table", iam_design),
    ("SECRETS-FIVE-CMEK-AUDITED", "the five secrets, regional CMEK replicas, API-only access, audited", secrets),
    ("PUBSUB-PUSH-OIDC-DLQ", "push subscriptions carry OIDC tokens the service checks, reach a served route, and dead-letter after 5 attempts", pubsub_oidc),
    ("PUBSUB-TOPICS", "the four topics with dead-letter topics, CMEK, regional storage", pubsub_topics),
    ("FIREWALL-443-EGRESS-ALLOWLIST", "ingress 443 only, SSH/RDP denied, egress allow-list, NAT static IP", firewall),
    ("LB-HTTPS-URL-MAP", "HTTPS 443 only, TLS 1.2 policy, Cloud Armor on every backend, the URL map", load_balancer),
    ("ARMOR-OWASP-RATE-BAN", "Cloud Armor OWASP Top 10 rules and a rate-based ban", cloud_armor),
    ("STORAGE-ARCHIVE", "buckets: uniform access, CMEK, versioned (noncurrent kept at most 7 days); archive Nearline 1 year, backup drill 30 days", storage),
    ("FIRESTORE-PITR-CMEK", "Firestore with PITR, CMEK and delete protection", firestore),
    ("VPC-SC-PERIMETER", "an enforced VPC Service Controls perimeter around the data services", vpc_sc),
    ("MONITORING-ALERTS-BY-SEVERITY", "the six alerts, with severity, critical ones paging on-call", monitoring),
    ("RUN-ENV-WIRED", "every variable a function's code reads is set for it in Terraform (secrets by Secret Manager reference) or allow-listed with a reason", env_wiring),
    ("SCHEDULER-JOBS", "scheduler/*.yaml name defined jobs, run in UTC, authenticate", scheduler),
]


def run(env: Environment, scheduler_dir: Path, sources: Path) -> list[dict]:
    ctx = {"scheduler_dir": scheduler_dir, "sources": sources}
    results = []
    for cid, title, fn in CONTROLS:
        findings = fn(env, ctx)
        results.append({"control": cid, "title": title, "status": "fail" if findings else "pass", "findings": findings})
    return results
