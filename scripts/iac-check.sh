#!/usr/bin/env bash
# Offline checks of the infrastructure code: HCL parse, checkov, terraform fmt (when a
# terraform binary exists), the compliance report with its tests, and Semgrep on the Rust code.
# Needs python3 and PyPI; tools go to virtualenvs outside the repository and are reused.
#
#   scripts/iac-check.sh                    run every check, exit non-zero on any failure
#   scripts/iac-check.sh --update-evidence  also regenerate the committed terraform/evidence/
set -euo pipefail

cd "$(dirname "$0")/.."
update_evidence=0
[ "${1:-}" = "--update-evidence" ] && update_evidence=1

cache="${XDG_CACHE_HOME:-$HOME/.cache}/dta-wide"
tools_venv="$cache/iac-tools"
checkov_venv="$cache/iac-checkov"
export TF_CLI_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

step() { printf '\n== %s\n' "$*"; }

ensure_venv() { # dir requirements-file
  local dir=$1 req=$2 stamp
  stamp=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -f "$dir/.requirements.sha256" ] && [ "$(cat "$dir/.requirements.sha256")" = "$stamp" ]; then
    return 0
  fi
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet -r "$req"
  echo "$stamp" >"$dir/.requirements.sha256"
}

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else
    echo "python3 with the venv module is required (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi

step "tool environments ($cache)"
mkdir -p "$cache"
ensure_venv "$tools_venv" scripts/evidence/requirements.txt &
tools_pid=$!
ensure_venv "$checkov_venv" scripts/evidence/requirements-checkov.txt &
checkov_pid=$!
wait "$tools_pid"
wait "$checkov_pid"
py="$tools_venv/bin/python"

step "HCL parse of every .tf file"
mapfile -t tf_files < <(find terraform -name '*.tf' -not -path '*/.terraform/*' | sort)
"$py" - "${tf_files[@]}" <<'PY'
import sys, hcl2
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            hcl2.load(f)
    except Exception as e:  # the parser raises lark errors of several types
        sys.exit(f"{path}: {e}")
print(f"parsed {len(sys.argv) - 1} files")
PY

step "terraform fmt"
if command -v terraform >/dev/null; then
  terraform fmt -check -recursive -diff terraform
  echo "formatted"
else
  echo "no terraform binary: skipped (the deployment pipeline runs fmt, init and validate)"
fi

step "checkov (terraform, Dockerfile, GitHub Actions)"
"$checkov_venv/bin/checkov" -d terraform --framework terraform --skip-download --quiet --compact
"$checkov_venv/bin/checkov" -f Dockerfile --framework dockerfile --skip-download --quiet --compact
"$checkov_venv/bin/checkov" -d .github/workflows --framework github_actions --skip-download --quiet --compact

step "compliance report"
if [ "$update_evidence" = 1 ]; then
  rm -rf terraform/evidence/staging terraform/evidence/production
  "$py" scripts/evidence/evidence.py generate --out terraform/evidence >/dev/null || true
fi
"$py" scripts/evidence/evidence.py check

step "evidence tests"
"$py" -m pytest -q -p no:cacheprovider scripts/evidence/tests

step "semgrep (Rust)"
# Rules of severity ERROR are security bugs (TLS verification off, unsigned JWTs, unsafe) and
# fail the check. WARNING rules (logging of secret-named fields, env reads outside config)
# are reported but do not fail it while the workspace is still being written; the
# deployment pipeline blocks on both.
targets=()
for d in common functions; do [ -d "$d" ] && targets+=("$d"); done
if [ "${#targets[@]}" -gt 0 ]; then
  semgrep=("$tools_venv/bin/semgrep" scan --config .github/semgrep --metrics=off --disable-version-check --quiet)
  "${semgrep[@]}" --severity WARNING "${targets[@]}" || true
  "${semgrep[@]}" --severity ERROR --error "${targets[@]}"
fi
"$tools_venv/bin/semgrep" --test --metrics=off --disable-version-check --quiet .github/semgrep

step "cargo-deny (licences, bans, sources; advisories need the network and run in the pipeline)"
if command -v cargo-deny >/dev/null && [ -f Cargo.lock ]; then
  cargo-deny --manifest-path Cargo.toml --config .github/deny.toml check licenses bans sources
else
  echo "cargo-deny not installed: skipped"
fi

step "all infrastructure checks passed"
