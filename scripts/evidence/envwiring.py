"""Which environment variables each function's Rust code reads, and whether Terraform sets them.

The code side is read from the sources, not from a list kept by hand: a function's variables
are the `env = "NAME"` arguments of the clap structs its `Config` (the crate's
`#[derive(clap::Parser)]` struct) contains, followed through every `#[command(flatten)]` field
into the crate's own and `common`'s structs, plus every `std::env::var("NAME")` /
`var_os("NAME")` outside test code in the crate (and in `common`, which every function links).

A variable the code reads must be set for that function in Terraform (plain or as a Secret
Manager reference) or be named in NOT_SET below with the reason it stays unset in the cloud.
A variable Terraform sets must be read by the code or be named in SET_UNREAD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Variables no Terraform sets, with the reason. Nothing else may be missing.
NOT_SET = {
    # Set by Cloud Run itself (container runtime contract).
    "PORT": "set by Cloud Run (8080, the container port)",
    "K_SERVICE": "set by Cloud Run services",
    "K_REVISION": "set by Cloud Run services",
    "CLOUD_RUN_JOB": "set by Cloud Run jobs",
    "CLOUD_RUN_EXECUTION": "set by Cloud Run jobs",
    "CLOUD_RUN_TASK_INDEX": "set by Cloud Run jobs",
    "CLOUD_RUN_TASK_COUNT": "set by Cloud Run jobs",
    "CLOUD_RUN_TASK_ATTEMPT": "set by Cloud Run jobs",
    # Trigger-time values of a job run.
    "JOB_SCHEDULE_TIME": "given by the local scheduler; Cloud Scheduler cannot put its schedule time into a job run, so the job uses the execution's UTC date",
    "JOB_LOGICAL_DATE": "for a manual backfill only (gcloud run jobs execute --update-env-vars)",
    # Local development and tests only: emulators, local key files, sinks, test switches.
    "PUBSUB_EMULATOR_HOST": "local Pub/Sub emulator; unset in the cloud",
    "STORAGE_EMULATOR_HOST": "local fake-gcs-server; unset in the cloud",
    "DATA_KEY_FILE": "local wrapping-key file; the cloud wraps data keys with Cloud KMS (KMS_KEY_NAME)",
    "MAIL_SINK_DIR": "local mail directory; the cloud sends through Mailgun",
    "PUSH_AUTH_DISABLED": "local runs without Google-signed push tokens; the cloud verifies every push (default false)",
    "JWT_PREVIOUS_KEYS": "older JWT keys inline, for local runs; the cloud mounts them as files (JWT_PREVIOUS_KEYS_DIR)",
    "BACKUP_CREATE_BUCKET": "local runs create their bucket; Terraform owns the cloud's (default false)",
    "ARCHIVE_CREATE_BUCKET": "local runs create their bucket; Terraform owns the cloud's (default false)",
    "SQLADMIN_ENDPOINT": "tests point it at a local fake; the default is Google's Cloud SQL Admin API",
    "SQLADMIN_TOKEN_URL": "tests point it at a local fake; the default is the Cloud Run metadata server",
    "KMS_ENDPOINT": "tests point it at a local Cloud KMS stand-in; unset, the client calls Cloud KMS",
    "PG_BIN_DIR": "pg_dump/pg_restore are found on PATH when unset (dump-and-restore drill only)",
    "RESTORE_DATABASE_URL": "the dump-and-restore drill without SQL_INSTANCE; on Cloud SQL the job restores into RESTORE_CHECK_INSTANCE",
    # Optional settings that are off in the cloud until decided.
    "MIN_APP_VERSION": "unset: no minimum app version is enforced until a release has to be retired",
    "ERASURE_BUCKETS": "no bucket holds per-user objects under users/{id}/ in the cloud (exports are streamed, not stored)",
    # Settings whose code default is the production value (the default is in the code, next
    # to the reference it comes from); setting them here would only duplicate it.
    "BIND_ADDRESS": "default 0.0.0.0",
    "REQUEST_TIMEOUT_SECS": "default 30 s",
    "SHUTDOWN_GRACE_SECS": "default 8 s (Cloud Run allows 10)",
    "DB_MAX_CONNECTIONS": "default 10 per instance",
    "DB_CONNECT_TIMEOUT_SECS": "default 5 s",
    "JWT_ISSUER": "default dta-wide-auth",
    "JWT_AUDIENCE": "default dta-wide-api",
    "JWT_LEEWAY_SECS": "default 30 s",
    "OUTBOX_INTERVAL_MS": "default 200 ms",
    "REDIS_KEY_PREFIX": "default dta (one Memorystore instance per environment)",
    "REDIS_TIMEOUT_MS": "default 500 ms",
    "SESSION_IDLE_TIMEOUT_SECS": "default 30 min (TR-03161-3 O.Auth_10)",
    "SESSION_ABSOLUTE_TIMEOUT_SECS": "default 12 h (TR-03161-3 O.Auth_11)",
    "DATA_RATE_LIMIT_PER_MIN": "default 300 per user",
    "AUTH_LIMIT_PER_ACCOUNT": "default 5 per window",
    "AUTH_LIMIT_PER_IP": "default 30 per window",
    "AUTH_LIMIT_WINDOW_SECS": "default 60 s",
    "TRUSTED_PROXY_HOPS": "default 1 (the load balancer)",
    "MAILGUN_API_BASE": "default https://api.eu.mailgun.net (EU region)",
    "DIARY_EDIT_WINDOW_DAYS": "default 7 (REFERENCE §2.3)",
    "TITRATION_PROFILE": "default S (REFERENCE §2.7)",
    "BACKUP_PREFIX": "default restore-drill",
    "BACKUP_WORK_DIR": "default /tmp",
    "BACKUP_MAX_AGE_HOURS": "default 26 h",
    "RTO_SECONDS": "default 4 h (design RTO)",
    "RESTORE_DEADLINE_SECONDS": "default 2700 s, inside the job's 3600 s timeout",
    "RESTORE_POLL_SECONDS": "default 15 s",
    "ARCHIVE_PREFIX": "default firestore",
    "ARCHIVE_HOT_DAYS": "default 90 days",
    "ARCHIVE_CHUNK_DOCS": "default 2000",
    "ARCHIVE_COLLECTION_GROUPS": "default analysis_logs,events",
    "AUDIT_ARCHIVE_PREFIX": "default audit",
    "AUDIT_HOT_DAYS": "default 90 days (the archive keeps a year more)",
    "AUDIT_CHUNK_ENTRIES": "default 5000",
    "RETENTION_INACTIVE_ACCOUNT_DAYS": "default 730 days (TR O.Data_7; README retention table)",
    "RETENTION_AUTH_TOKEN_DAYS": "default 7 days",
    "RETENTION_PROCESSED_EVENT_DAYS": "default 30 days",
    "RETENTION_UNDELIVERABLE_DAYS": "default 90 days",
    "RETENTION_JOB_RUN_DAYS": "default 400 days",
    "RETENTION_ERASURE_LEDGER_DAYS": "default 400 days (longer than backups and archive are kept)",
}

# Variables Terraform sets that no code reads, with the reason.
SET_UNREAD = {
    "DEPLOY_ENVIRONMENT": "names the environment in each revision's configuration, for people",
}

# Crates under functions/ that are not deployed.
LOCAL_ONLY_CRATES = {
    "local-platform": "runs every function on one machine for development; not deployed",
}

_DERIVE = re.compile(r"#\[derive\(([^)]*)\)\]")
_STRUCT = re.compile(r"(?:\bpub(?:\([^)]*\))?\s+)?\bstruct\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")
_ENV_ARG = re.compile(r"\benv\s*=\s*\"([A-Z][A-Z0-9_]*)\"")
_ENV_CALL = re.compile(r"\benv::var(?:_os)?\(\s*\"([A-Z][A-Z0-9_]*)\"\s*\)")
_FIELD = re.compile(r"\bpub\s+[a-z_][a-z0-9_]*\s*:\s*([^,]+),")


@dataclass
class ClapStruct:
    name: str
    parser: bool
    env: set[str] = field(default_factory=set)
    secret: set[str] = field(default_factory=set)
    flatten: list[str] = field(default_factory=list)
    path: str = ""


def strip_tests(text: str) -> str:
    """The file without its `#[cfg(test)] mod x { ... }` blocks (tests may read what they like)."""
    out, pos = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+\w+\s*(\{|;)", text):
        if m.start() < pos:
            continue
        out.append(text[pos : m.start()])
        pos = m.end() if m.group(1) == ";" else m.end(1) + len(_body(text, m.end(1) - 1)) + 1
    out.append(text[pos:])
    return "".join(out)


def _strip_comments(text: str) -> str:
    """Without whole-line comments (doc comments name variables they do not read)."""
    return re.sub(r"(?m)^\s*//[^\n]*$", "", text)


def _only_attributes(text: str) -> bool:
    """True when text is nothing but `#[...]` attributes and whitespace."""
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith("#[", i):
            i += 1
            depth = 0
            while i < len(text):
                depth += text[i] == "["
                depth -= text[i] == "]"
                i += 1
                if depth == 0:
                    break
        else:
            return False
    return True


def _body(text: str, open_at: int) -> str:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return text[open_at + 1 :]


def rust_files(crate: Path) -> list[Path]:
    """Library and binary sources of a crate (not tests/, benches/, examples/, testkit)."""
    return sorted(p for p in (crate / "src").rglob("*.rs") if p.name != "testkit.rs")


def clap_structs(files: list[Path], root: Path) -> dict[str, ClapStruct]:
    out: dict[str, ClapStruct] = {}
    for path in files:
        text = _strip_comments(strip_tests(path.read_text()))
        for d in _DERIVE.finditer(text):
            derives = d.group(1)
            if not re.search(r"\b(Parser|Args)\b", derives):
                continue
            s = _STRUCT.search(text, d.end())
            # The derive must be this struct's: only attributes stand between them.
            if not s or not _only_attributes(text[d.end() : s.start()]):
                continue
            body = _body(text, s.end() - 1)
            st = ClapStruct(s.group(1), bool(re.search(r"\bParser\b", derives)), path=str(path.relative_to(root)))
            st.env.update(_ENV_ARG.findall(body))
            # A field is its attributes followed by `pub name: Type,`.
            pos = 0
            for f in _FIELD.finditer(body):
                attrs = body[pos : f.start()]
                pos = f.end()
                if "SecretString" in f.group(1):
                    st.secret.update(_ENV_ARG.findall(attrs))
                if re.search(r"#\[command\(\s*flatten\s*\)\]", attrs):
                    ty = f.group(1).strip()
                    ty = re.sub(r"^Option<(.*)>$", r"\1", ty)
                    st.flatten.append(ty.split("::")[-1].split("<")[0].strip())
            out[st.name] = st
    return out


def direct_reads(files: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in files:
        found.update(_ENV_CALL.findall(_strip_comments(strip_tests(path.read_text()))))
    return found


def function_reads(sources: Path, name: str) -> dict[str, str]:
    """NAME -> where it is read, for the function crate functions/<name>."""
    return function_config(sources, name)[0]


def function_config(sources: Path, name: str) -> tuple[dict[str, str], set[str]]:
    """(NAME -> where it is read, the names read into a SecretString) of functions/<name>."""
    crate = sources / "functions" / name
    own_files = rust_files(crate)
    common_files = rust_files(sources / "common")
    own = clap_structs(own_files, sources)
    common = clap_structs(common_files, sources)
    # Structs of other function crates it depends on (e.g. retention uses privacy's erasure).
    for dep in path_dependencies(crate):
        for sname, st in clap_structs(rust_files(dep), sources).items():
            if not st.parser:
                own.setdefault(sname, st)
    roots = [s for s in own.values() if s.parser]
    if len(roots) != 1:
        raise ValueError(f"functions/{name}: expected one clap::Parser Config, found {[s.name for s in roots]}")
    reads: dict[str, str] = {}
    secrets: set[str] = set()
    seen: set[str] = set()

    def walk(st: ClapStruct):
        if st.name in seen:
            return
        seen.add(st.name)
        for var in sorted(st.env):
            reads.setdefault(var, f"{st.path} {st.name}")
        secrets.update(st.secret)
        for ty in st.flatten:
            target = own.get(ty) or common.get(ty)
            if target is None:
                raise ValueError(f"{st.path}: flattened {ty} is not a clap struct of functions/{name} or common")
            walk(target)

    walk(roots[0])
    for var in sorted(direct_reads(own_files)):
        reads.setdefault(var, f"functions/{name}/src (std::env)")
    for var in sorted(direct_reads(common_files)):
        reads.setdefault(var, "common/src (std::env)")
    return reads, secrets


def path_dependencies(crate: Path) -> list[Path]:
    """Crates named by `path = "..."` in the [dependencies] table of crate/Cargo.toml."""
    deps, in_deps = [], False
    for line in (crate / "Cargo.toml").read_text().splitlines():
        if line.startswith("["):
            in_deps = line.strip() == "[dependencies]"
        elif in_deps:
            m = re.search(r'path\s*=\s*"([^"]+)"', line)
            if m:
                deps.append((crate / m.group(1)).resolve())
    return deps


def deployed_crates(sources: Path) -> list[str]:
    return sorted(p.name for p in (sources / "functions").iterdir() if (p / "Cargo.toml").exists())
