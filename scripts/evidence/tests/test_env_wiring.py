"""RUN-ENV-WIRED: a variable the Rust code reads and Terraform does not set is reported by
function and name, from the code side as well as from the Terraform side."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import envwiring  # noqa: E402
import evidence  # noqa: E402

REPO = HERE.parents[2]


def copy_sources(tmp: Path) -> Path:
    """common/ and functions/ (manifests and src/ only) of the repository."""
    root = tmp / "src-copy"
    for crate in [REPO / "common", *sorted((REPO / "functions").iterdir())]:
        if not (crate / "Cargo.toml").exists():
            continue
        dest = root / crate.relative_to(REPO)
        shutil.copytree(crate / "src", dest / "src")
        shutil.copy(crate / "Cargo.toml", dest / "Cargo.toml")
    return root


def check(capsys, sources: Path) -> tuple[int, str]:
    rc = evidence.main(["check", "--env", "production", "--sources", str(sources)])
    return rc, capsys.readouterr().out


def wired_findings(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL production RUN-ENV-WIRED:")]


def test_committed_sources_and_terraform_agree(capsys):
    rc, out = check(capsys, REPO)
    assert wired_findings(out) == [], out
    assert "PASS production RUN-ENV-WIRED" in out


def test_a_new_config_field_without_terraform_fails(tmp_path, capsys):
    src = copy_sources(tmp_path)
    lib = src / "functions" / "sleep-analysis" / "src" / "lib.rs"
    text = lib.read_text()
    anchor = '    #[arg(long, env = "TITRATION_PROFILE", default_value = "S")]'
    assert text.count(anchor) == 1
    lib.write_text(text.replace(anchor, '    #[arg(long, env = "WEEKLY_REPORT_TOPIC")]\n    pub weekly_report_topic: String,\n' + anchor))
    rc, out = check(capsys, src)
    assert rc == 1
    assert wired_findings(out) == [
        "FAIL production RUN-ENV-WIRED: sleep-analysis: WEEKLY_REPORT_TOPIC (read in functions/sleep-analysis/src/lib.rs Config) is not set"
    ], out


def test_a_field_of_a_flattened_common_struct_counts_for_every_user(tmp_path, capsys):
    src = copy_sources(tmp_path)
    cfg = src / "common" / "src" / "config.rs"
    text = cfg.read_text()
    anchor = '    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]'
    assert text.count(anchor) == 1
    cfg.write_text(text.replace(anchor, '    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS")]\n    pub db_statement_timeout_ms: u64,\n' + anchor))
    rc, out = check(capsys, src)
    assert rc == 1
    users = {line.split(": ")[1] for line in wired_findings(out)}
    # Every function whose Config flattens DbConfig, and only those.
    assert users == {"auth", "backup-verification", "log-ingestion", "migrate", "privacy",
                     "questionnaire-scoring", "retention", "sleep-analysis", "sleep-diary"}, out
    assert all("DB_STATEMENT_TIMEOUT_MS (read in common/src/config.rs DbConfig) is not set" in line for line in wired_findings(out))


def test_std_env_var_outside_tests_counts_and_inside_tests_does_not(tmp_path, capsys):
    src = copy_sources(tmp_path)
    main = src / "functions" / "migrate" / "src" / "lib.rs"
    main.write_text(main.read_text()
                    + '\npub fn region() -> Option<String> {\n    std::env::var("MIGRATE_REGION").ok()\n}\n'
                    + '\n#[cfg(test)]\nmod env_tests {\n    #[test]\n    fn reads() {\n        let _ = std::env::var("ONLY_IN_A_TEST");\n    }\n}\n')
    rc, out = check(capsys, src)
    assert rc == 1
    assert wired_findings(out) == [
        "FAIL production RUN-ENV-WIRED: migrate: MIGRATE_REGION (read in functions/migrate/src (std::env)) is not set"
    ], out


def test_a_variable_dropped_from_the_code_is_reported_as_set_but_unread(tmp_path, capsys):
    src = copy_sources(tmp_path)
    lib = src / "functions" / "sleep-diary" / "src" / "lib.rs"
    text = lib.read_text()
    start = text.index('    #[arg(long, env = "DIARY_EDIT_WINDOW_DAYS"')
    lib.write_text(text.replace(text[start:text.index("\n", start) + 1], ""))
    rc, out = check(capsys, src)
    # DIARY_EDIT_WINDOW_DAYS is allow-listed (default) and now read nowhere: the list must shrink.
    assert "FAIL production RUN-ENV-WIRED: envwiring.NOT_SET names DIARY_EDIT_WINDOW_DAYS, which no deployed function reads" in out, out


def test_parser_follows_flatten_through_option_and_other_crates(tmp_path):
    root = tmp_path
    (root / "common" / "src").mkdir(parents=True)
    (root / "common" / "Cargo.toml").write_text('[package]\nname = "common"\n')
    (root / "common" / "src" / "lib.rs").write_text(
        "/// Reads `env = \"NOT_A_VAR\"` only in its doc.\n"
        "#[derive(Debug, Clone, clap::Args)]\npub struct Shared {\n"
        "    /// The key.\n    #[arg(long, env = \"SHARED_KEY\")]\n    pub key: secrecy::SecretString,\n}\n")
    for name, body in {
        "lib-a": "#[derive(Debug, clap::Args)]\npub struct Extra {\n    #[arg(long, env = \"EXTRA\", default_value_t = 1)]\n    pub extra: u32,\n}\n",
        "fn-b": ("#[derive(Debug, clap::Parser)]\n#[command(\n    name = \"b\",\n    about = \"x\"\n)]\npub struct Config {\n"
                 "    #[command(flatten)]\n    pub shared: Option<common::Shared>,\n"
                 "    #[command(flatten)]\n    pub extra: lib_a::Extra,\n"
                 "    // env = \"COMMENTED\"\n    #[arg(long, env = \"OWN\")]\n    pub own: Option<String>,\n}\n"),
    }.items():
        crate = root / "functions" / name
        (crate / "src").mkdir(parents=True)
        deps = '[dependencies]\nlib-a = { path = "../lib-a" }\n' if name == "fn-b" else ""
        (crate / "Cargo.toml").write_text(f'[package]\nname = "{name}"\n\n{deps}\n[dev-dependencies]\nunused = {{ path = "../nowhere" }}\n')
        (crate / "src" / "lib.rs").write_text(body)
    reads, secrets = envwiring.function_config(root, "fn-b")
    assert sorted(reads) == ["EXTRA", "OWN", "SHARED_KEY"]
    assert reads["SHARED_KEY"] == "common/src/lib.rs Shared"
    assert secrets == {"SHARED_KEY"}


def test_every_allow_list_entry_has_a_reason():
    for table in (envwiring.NOT_SET, envwiring.SET_UNREAD, envwiring.LOCAL_ONLY_CRATES):
        for name, reason in table.items():
            assert name.strip() and len(reason.split()) >= 2, name
    assert not set(envwiring.NOT_SET) & set(envwiring.SET_UNREAD)
