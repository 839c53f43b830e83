#!/usr/bin/env bash
# Sets up what the tests need (PostgreSQL, Redis) and runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_postgres
ensure_redis
scripts/emulators.sh start
eval "$(scripts/emulators.sh env)"
export DATABASE_URL="$PG_URL_BASE/postgres"
export REDIS_URL="redis://127.0.0.1:6379"
REALDATA_DIR=$(realdata_dir)
export REALDATA_DIR

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

for extra in scripts/iac-check.sh scripts/fhir-check.sh; do
  if [ -x "$extra" ]; then
    echo "== $extra"
    "$extra"
  fi
done
