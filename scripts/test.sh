#!/usr/bin/env bash
# Sets up what the tests need and runs every check and test. Each service and tool is checked,
# started when not running and installed from Debian's packages when missing: PostgreSQL
# (DATABASE_URL, default the local server on 127.0.0.1:5432) with pg_dump/pg_restore of its
# major version, Redis (REDIS_URL, default 127.0.0.1:6379), the emulators, openssl, kill,
# python3 with venv, rustfmt, clippy and cargo-nextest. A DATABASE_URL or REDIS_URL pointing
# elsewhere must already answer; only the local defaults are started here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

export DATABASE_URL="${DATABASE_URL:-$PG_URL_BASE/postgres}"
export REDIS_URL="${REDIS_URL:-$REDIS_URL_DEFAULT}"
ensure_test_tools
ensure_rust_components
ensure_postgres "$DATABASE_URL"
ensure_pg_tools "$DATABASE_URL"
ensure_redis "$REDIS_URL"
scripts/emulators.sh start
eval "$(scripts/emulators.sh env)"
REALDATA_DIR=$(realdata_dir)
export REALDATA_DIR

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if ensure_nextest; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  echo "=================================================================" >&2
  echo "cargo-nextest is missing and could not be installed: running the" >&2
  echo "suite with plain cargo test (slower, one test binary at a time)" >&2
  echo "=================================================================" >&2
  cargo test --workspace --locked --no-fail-fast
fi

for extra in scripts/iac-check.sh scripts/fhir-check.sh; do
  if [ -x "$extra" ]; then
    echo "== $extra"
    "$extra"
  fi
done
