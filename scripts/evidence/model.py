"""The evaluated Terraform of one environment, with the look-ups evidence and controls share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tfeval
from tfeval import Resource, Unknown, render

SERVICE_KINDS = {"http_services": "http-service", "push_services": "push-service", "jobs": "job"}


@dataclass
class Environment:
    name: str
    root: Path
    resources: list[Resource]
    provider_region: object
    inputs: dict

    @classmethod
    def load(cls, terraform_dir: Path, env: str) -> "Environment":
        root_dir = terraform_dir / "environments" / env
        inst = tfeval.evaluate_root(root_dir)
        resources = inst.all_resources()
        provider_region = Unknown("provider.google.region")
        for f in sorted(root_dir.glob("*.tf")):
            doc = tfeval.hcl2.load(f.open())
            for block in doc.get("provider", []):
                for _, body in tfeval.strip_meta(block).items():
                    if "region" in body:
                        provider_region = inst.value(body["region"], {})
        return cls(env, root_dir, resources, provider_region, inst.inputs)

    def of_type(self, rtype: str) -> list[Resource]:
        return [r for r in self.resources if r.type == rtype and r.mode == "resource"]

    def one(self, rtype: str) -> Resource | None:
        found = self.of_type(rtype)
        return found[0] if found else None

    @property
    def project_id(self):
        return self.inputs.get("project_id")

    def functions(self) -> list[dict]:
        """Every function: name, kind, and the Cloud Run resource that runs it."""
        out = []
        for r in self.resources:
            if r.type not in ("google_cloud_run_v2_service", "google_cloud_run_v2_job"):
                continue
            kind = next((k for m, k in SERVICE_KINDS.items() if f"module.{m}[" in r.module), "other")
            out.append({"name": r.attrs.get("name"), "kind": kind, "resource": r})
        return sorted(out, key=lambda f: (f["kind"], str(f["name"])))

    def iam_members(self) -> list[dict]:
        """Every non-authoritative IAM grant, flattened to scope / resource / role / member."""
        out = []
        for r in self.resources:
            if not r.type.endswith("_iam_member"):
                continue
            scope = r.type.removeprefix("google_").removesuffix("_iam_member")
            target = next(
                (r.attrs[k] for k in ("secret_id", "bucket", "crypto_key_id", "topic", "subscription",
                                      "service_account_id", "repository", "name", "project") if k in r.attrs),
                None,
            )
            grant = {
                "scope": scope,
                "resource": render(target),
                "role": render(r.attrs.get("role")),
                "member": render(r.attrs.get("member")),
                "address": r.address,
            }
            if r.attrs.get("condition"):
                grant["condition"] = render(first(r.attrs["condition"]).get("expression"))
            out.append(grant)
        return sorted(out, key=lambda g: (g["scope"], str(g["resource"]), str(g["role"]), str(g["member"])))


def first(block) -> dict:
    """A nested block as a dict (python-hcl2 gives lists of blocks)."""
    if isinstance(block, list):
        return block[0] if block else {}
    return block if isinstance(block, dict) else {}
