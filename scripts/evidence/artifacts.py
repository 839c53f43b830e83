"""Writes the audit evidence files of one environment from its evaluated Terraform."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from model import Environment, first
from tfeval import render

GLOBAL = "global"


def location_of(attrs: dict):
    for key in ("region", "location", "location_id"):
        if key in attrs:
            return render(attrs[key])
    return GLOBAL


def project_structure(env: Environment) -> dict:
    by_type: dict[str, list] = {}
    for r in env.resources:
        if r.mode != "resource":
            continue
        by_type.setdefault(r.type, []).append({
            "address": r.address,
            "name": render(r.attrs.get("name", r.attrs.get("secret_id", r.attrs.get("account_id", r.key)))),
            "location": location_of(r.attrs),
        })
    policies = [
        {"constraint": render(p.attrs["name"]).rsplit("/policies/", 1)[-1], "spec": render(first(p.attrs.get("spec")))}
        for p in env.of_type("google_org_policy_policy")
    ]
    perimeter = env.one("google_access_context_manager_service_perimeter")
    status = first(perimeter.attrs.get("status")) if perimeter else {}
    return {
        "environment": env.name,
        "project_id": env.project_id,
        "region": render(env.provider_region),
        "terraform_root": f"terraform/environments/{env.name}",
        "organization_policies": policies,
        "enabled_services": sorted(r.attrs["service"] for r in env.of_type("google_project_service")),
        "functions": [
            {"name": f["name"], "kind": f["kind"], "terraform": f["resource"].address}
            for f in env.functions()
        ],
        "vpc_service_controls": {
            "perimeter": render(perimeter.attrs.get("title")) if perimeter else None,
            "enforced": bool(status),
            "resources": render(status.get("resources", [])),
            "restricted_services": render(status.get("restricted_services", [])),
        },
        "resources": {t: sorted(v, key=lambda x: x["address"]) for t, v in sorted(by_type.items())},
    }


def _env_vars(container: dict) -> list[dict]:
    out = []
    for e in container.get("env", []):
        if "value_source" in e:
            ref = first(first(e["value_source"]).get("secret_key_ref"))
            out.append({"name": e["name"], "valueFrom": {"secretKeyRef": {"name": ref.get("secret"), "key": str(ref.get("version"))}}})
        else:
            out.append({"name": e["name"], "value": render(e.get("value"))})
    return out


def _volumes(template: dict) -> list[dict]:
    """Secret volumes in Cloud Run's YAML form (item key = secret version)."""
    out = []
    for v in template.get("volumes", []):
        s = first(v.get("secret"))
        out.append({
            "name": v.get("name"),
            "secret": {
                "secretName": render(s.get("secret")),
                "defaultMode": s.get("default_mode"),
                "items": [{"key": str(i.get("version")), "path": str(i.get("path"))} for i in s.get("items", [])],
            },
        })
    return out


def _mounts(container: dict) -> list[dict]:
    return [{"name": m.get("name"), "mountPath": m.get("mount_path"), "readOnly": True} for m in container.get("volume_mounts", [])]


def _with_volumes(spec: dict, template: dict, container_spec: dict, container: dict) -> dict:
    """Adds volumes and mounts only where there are any, so other files keep their form."""
    if template.get("volumes"):
        spec["volumes"] = _volumes(template)
    if container.get("volume_mounts"):
        container_spec["volumeMounts"] = _mounts(container)
    return spec


_INGRESS = {
    "INGRESS_TRAFFIC_ALL": "all",
    "INGRESS_TRAFFIC_INTERNAL_ONLY": "internal",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER": "internal-and-cloud-load-balancing",
}


def knative_service(env: Environment, r) -> dict:
    a = r.attrs
    t = first(a.get("template"))
    c = first(t.get("containers"))
    scaling = first(t.get("scaling"))
    vpc = first(t.get("vpc_access"))
    res = first(c.get("resources"))
    probe = first(c.get("startup_probe"))
    annotations = {
        "run.googleapis.com/ingress": _INGRESS.get(a.get("ingress"), render(a.get("ingress"))),
    }
    if a.get("invoker_iam_disabled"):
        annotations["run.googleapis.com/invoker-iam-disabled"] = "true"
    container_spec = {
        "image": render(c.get("image")),
        "ports": [{"name": "http1", "containerPort": first(c.get("ports")).get("container_port", 8080)}],
        "env": _env_vars(c),
        "resources": {"limits": render(res.get("limits", {}))},
        "startupProbe": {
            "tcpSocket": {"port": first(probe.get("tcp_socket")).get("port")},
            "periodSeconds": probe.get("period_seconds"),
            "failureThreshold": probe.get("failure_threshold"),
        },
    }
    pod_spec = {
        "containerConcurrency": t.get("max_instance_request_concurrency"),
        "timeoutSeconds": int(str(t.get("timeout", "300s")).rstrip("s")),
        "serviceAccountName": render(t.get("service_account")),
        "containers": [container_spec],
    }
    _with_volumes(pod_spec, t, container_spec, c)
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": a["name"],
            "namespace": env.project_id,
            "labels": dict(sorted({**render(a.get("labels", {})), "cloud.googleapis.com/location": render(a.get("location"))}.items())),
            "annotations": annotations,
        },
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        "autoscaling.knative.dev/minScale": str(scaling.get("min_instance_count")),
                        "autoscaling.knative.dev/maxScale": str(scaling.get("max_instance_count")),
                        "run.googleapis.com/execution-environment": "gen2",
                        "run.googleapis.com/cpu-throttling": "true" if res.get("cpu_idle", True) else "false",
                        "run.googleapis.com/startup-cpu-boost": "true" if res.get("startup_cpu_boost") else "false",
                        "run.googleapis.com/vpc-access-connector": render(vpc.get("connector")),
                        "run.googleapis.com/vpc-access-egress": "all-traffic" if vpc.get("egress") == "ALL_TRAFFIC" else "private-ranges-only",
                    },
                },
                "spec": pod_spec,
            },
            "traffic": [{"percent": 100, "latestRevision": True}],
        },
    }


def knative_job(env: Environment, r) -> dict:
    a = r.attrs
    outer = first(a.get("template"))
    t = first(outer.get("template"))
    c = first(t.get("containers"))
    vpc = first(t.get("vpc_access"))
    container_spec = {
        "image": render(c.get("image")),
        "env": _env_vars(c),
        "resources": {"limits": render(first(c.get("resources")).get("limits", {}))},
    }
    task_spec = {
        "maxRetries": t.get("max_retries"),
        "timeoutSeconds": int(str(t.get("timeout")).rstrip("s")),
        "serviceAccountName": render(t.get("service_account")),
        "containers": [container_spec],
    }
    _with_volumes(task_spec, t, container_spec, c)
    return {
        "apiVersion": "run.googleapis.com/v1",
        "kind": "Job",
        "metadata": {
            "name": a["name"],
            "namespace": env.project_id,
            "labels": dict(sorted({**render(a.get("labels", {})), "cloud.googleapis.com/location": render(a.get("location"))}.items())),
        },
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        "run.googleapis.com/execution-environment": "gen2",
                        "run.googleapis.com/vpc-access-connector": render(vpc.get("connector")),
                        "run.googleapis.com/vpc-access-egress": "all-traffic" if vpc.get("egress") == "ALL_TRAFFIC" else "private-ranges-only",
                    },
                },
                "spec": {
                    "taskCount": outer.get("task_count"),
                    "parallelism": outer.get("parallelism"),
                    "template": {
                        "spec": task_spec,
                    },
                },
            },
        },
    }


def cloudsql_config(env: Environment) -> dict:
    instances = []
    for r in env.of_type("google_sql_database_instance"):
        a = r.attrs
        s = first(a.get("settings"))
        b = first(s.get("backup_configuration"))
        ret = first(b.get("backup_retention_settings"))
        ip = first(s.get("ip_configuration"))
        instances.append({
            "name": a.get("name"),
            "database_version": a.get("database_version"),
            "region": render(a.get("region")),
            "tier": render(s.get("tier")),
            "availability_type": s.get("availability_type"),
            "high_availability": "regional (primary and standby in two zones, automatic failover)"
            if s.get("availability_type") == "REGIONAL" else "zonal (no standby)",
            "encryption": {"cmek_key": render(a.get("encryption_key_name"))},
            "backups": {
                "enabled": b.get("enabled"),
                "start_time_utc": b.get("start_time"),
                "location": render(b.get("location")),
                "retained_backups": ret.get("retained_backups"),
                "retention_unit": ret.get("retention_unit"),
                "point_in_time_recovery": b.get("point_in_time_recovery_enabled"),
                "transaction_log_retention_days": b.get("transaction_log_retention_days"),
            },
            "network": {
                "public_ip": ip.get("ipv4_enabled"),
                "private_network": render(ip.get("private_network")),
                "ssl_mode": ip.get("ssl_mode"),
            },
            "database_flags": {f["name"]: f["value"] for f in s.get("database_flags", [])},
            "maintenance_window": render(first(s.get("maintenance_window"))),
            "deletion_protection": render(a.get("deletion_protection")),
            "databases": sorted(d.attrs["name"] for d in env.of_type("google_sql_database")),
            "users": sorted(({"name": render(u.attrs["name"]), "type": u.attrs.get("type")} for u in env.of_type("google_sql_user")), key=lambda u: u["name"]),
        })
    return {"environment": env.name, "project_id": env.project_id, "instances": instances}


def iam_roles(env: Environment) -> dict:
    grants = env.iam_members()
    by_member: dict[str, list] = {}
    for g in grants:
        by_member.setdefault(g["member"], []).append(f'{g["role"]} on {g["scope"]} {g["resource"]}')
    entitlements = []
    for e in env.of_type("google_privileged_access_manager_entitlement"):
        a = e.attrs
        access = first(first(a.get("privileged_access")).get("gcp_iam_access"))
        steps = first(first(a.get("approval_workflow")).get("manual_approvals")).get("steps", [])
        entitlements.append({
            "id": render(a.get("entitlement_id")),
            "eligible": render(first(a.get("eligible_users")).get("principals")),
            "roles": [b["role"] for b in access.get("role_bindings", [])],
            "resource": render(access.get("resource")),
            "max_duration": a.get("max_request_duration"),
            "approvals_needed": [s.get("approvals_needed") for s in steps],
            "approvers": [render(first(s.get("approvers")).get("principals")) for s in steps],
        })
    wif = env.one("google_iam_workload_identity_pool_provider")
    return {
        "environment": env.name,
        "project_id": env.project_id,
        "service_accounts": sorted(
            ({"email": s.attrs["email"], "display_name": s.attrs.get("display_name")} for s in env.of_type("google_service_account")),
            key=lambda s: s["email"],
        ),
        "grants": [{k: v for k, v in g.items() if k != "address"} for g in grants],
        "by_member": {m: sorted(v) for m, v in sorted(by_member.items())},
        "privileged_access_entitlements": entitlements,
        "workload_identity_federation": {
            "issuer": first(wif.attrs.get("oidc")).get("issuer_uri") if wif else None,
            "attribute_condition": render(wif.attrs.get("attribute_condition")) if wif else None,
        },
    }


def firewall_rules(env: Environment) -> dict:
    rules = []
    for r in env.of_type("google_compute_firewall"):
        a = r.attrs
        action = "allow" if "allow" in a else "deny"
        rules.append({
            "name": a["name"],
            "direction": a.get("direction"),
            "priority": a.get("priority"),
            "action": action,
            "rules": [{"protocol": x.get("protocol"), "ports": x.get("ports", [])} for x in a.get(action, [])],
            "source_ranges": render(a.get("source_ranges", [])),
            "destination_ranges": render(a.get("destination_ranges", [])),
            "logging": render(first(a.get("log_config")).get("metadata")) if a.get("log_config") else None,
        })
    rules.sort(key=lambda x: (x["direction"], x["priority"], x["name"]))
    nat = env.one("google_compute_router_nat")
    subnets = [
        {"name": s.attrs["name"], "cidr": s.attrs["ip_cidr_range"], "purpose": s.attrs.get("purpose", "PRIVATE")}
        for s in env.of_type("google_compute_subnetwork")
    ]
    connector = env.one("google_vpc_access_connector")
    if connector:
        subnets.append({"name": connector.attrs["name"], "cidr": connector.attrs["ip_cidr_range"], "purpose": "SERVERLESS_VPC_ACCESS"})
    for g in env.of_type("google_compute_global_address"):
        subnets.append({"name": g.attrs["name"], "cidr": f'{g.attrs["address"]}/{g.attrs["prefix_length"]}', "purpose": g.attrs.get("purpose")})
    return {
        "environment": env.name,
        "network": env.one("google_compute_network").attrs["name"],
        "address_ranges": sorted(subnets, key=lambda s: s["cidr"]),
        "firewall_rules": rules,
        "cloud_nat": {
            "ip_allocation": nat.attrs.get("nat_ip_allocate_option"),
            "static_ips": render(nat.attrs.get("nat_ips")),
            "logging": render(first(nat.attrs.get("log_config"))),
        } if nat else None,
    }


def secret_keys(env: Environment) -> dict:
    grants = env.iam_members()
    audit = sorted(a.attrs["service"] for a in env.of_type("google_project_iam_audit_config"))
    users: dict[str, list] = {}
    for f in env.functions():
        t = first(f["resource"].attrs.get("template"))
        if f["kind"] == "job":
            t = first(t.get("template"))
        for e in first(t.get("containers")).get("env", []):
            if "value_source" in e:
                ref = first(first(e["value_source"]).get("secret_key_ref"))
                users.setdefault(ref.get("secret"), []).append(f'{f["name"]} ({ref.get("version")})')
        for v in t.get("volumes", []):
            s = first(v.get("secret"))
            versions = ", ".join(str(i.get("version")) for i in s.get("items", []))
            users.setdefault(render(s.get("secret")), []).append(f'{f["name"]} (files: {versions})')
    secrets = []
    for s in env.of_type("google_secret_manager_secret"):
        a = s.attrs
        replicas = first(first(a.get("replication")).get("user_managed")).get("replicas", [])
        sid = a["secret_id"]
        secrets.append({
            "secret_id": sid,
            "replica_locations": [render(x.get("location")) for x in replicas],
            "cmek_keys": [render(first(x.get("customer_managed_encryption")).get("kms_key_name")) for x in replicas],
            "keep_versions": render(a.get("labels", {}).get("keep-versions")),
            "destroyed_version_delay": a.get("version_destroy_ttl"),
            "accessors": sorted(g["member"] for g in grants if g["scope"] == "secret_manager_secret" and g["resource"] == sid),
            "mounted_by": sorted(users.get(sid, [])),
        })
    return {
        "environment": env.name,
        "project_id": env.project_id,
        "values_in_terraform": False,
        "data_access_audit_logging": "secretmanager.googleapis.com" in audit,
        "secrets": sorted(secrets, key=lambda s: s["secret_id"]),
    }


def dump_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def dump_yaml(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=200))


def write_all(env: Environment, out: Path) -> list[Path]:
    base = out / env.name
    written = []

    def j(name, data):
        p = base / "artifacts" / name
        dump_json(p, data)
        written.append(p)

    j("gcp-project-structure.json", project_structure(env))
    j("cloudsql-config.json", cloudsql_config(env))
    j("iam-roles.json", iam_roles(env))
    j("vpc-firewall-rules.json", firewall_rules(env))
    j("secret-manager-keys.json", secret_keys(env))
    for f in env.functions():
        if f["kind"] == "job":
            p = base / "cloudrun-deploy" / f["name"] / "job.yaml"
            dump_yaml(p, knative_job(env, f["resource"]))
        else:
            p = base / "cloudrun-deploy" / f["name"] / "service.yaml"
            dump_yaml(p, knative_service(env, f["resource"]))
        written.append(p)
    return written
