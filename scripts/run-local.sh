#!/usr/bin/env bash
# The local platform: installs and starts PostgreSQL and Redis if needed, builds the workspace,
# migrates, starts every HTTP function behind one entry point on 127.0.0.1:8080 with the
# production paths, imports the sample files for a demo user and prints the nights.
# Keeps serving until Ctrl-C; with --once it stops after printing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

once=0
[ "${1:-}" = "--once" ] && once=1

ensure_postgres
ensure_redis
ensure_database dta_wide
REALDATA_DIR=$(realdata_dir)

cargo build --workspace --bins --locked
bin=target/debug
run_dir=target/local
mkdir -p "$run_dir"

# A development-only signing key, kept with the local run state.
if [ ! -s "$run_dir/jwt_secret" ]; then
  head -c 48 /dev/urandom | base64 | tr -d '\n/+=' >"$run_dir/jwt_secret"
fi
export JWT_SECRET
JWT_SECRET=$(cat "$run_dir/jwt_secret")
export JWT_KEY_ID=local-1
export DATABASE_URL="$PG_URL_BASE/dta_wide"
export REDIS_URL="redis://127.0.0.1:6379"
export BIND_ADDRESS=127.0.0.1
export RUST_LOG="${RUST_LOG:-info}"

"$bin/migrate"

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'exit 0' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start NAME PORT COMMAND...: runs COMMAND with PORT set and waits for /healthz.
start() {
  local name=$1 port=$2
  shift 2
  if ! port_free "$port"; then
    echo "port $port is in use; stop whatever listens there first" >&2
    exit 1
  fi
  PORT=$port "$@" >"$run_dir/$name.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
      echo "started $name on 127.0.0.1:$port (log: $run_dir/$name.log)"
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not start; its log:" >&2
  cat "$run_dir/$name.log" >&2
  exit 1
}

routes="/v1/auth=http://127.0.0.1:8081,/v1/sleep-logs=http://127.0.0.1:8082,/v1/imports=http://127.0.0.1:8083"
start auth 8081 "$bin/auth"
start sleep-diary 8082 "$bin/sleep-diary"
start log-ingestion 8083 "$bin/log-ingestion"
if [ -x "$bin/questionnaire-scoring" ]; then
  start questionnaire-scoring 8084 "$bin/questionnaire-scoring"
  routes="$routes,/v1/questionnaires=http://127.0.0.1:8084,/v1/questionnaire-responses=http://127.0.0.1:8084"
fi
ROUTES="$routes" start gateway 8080 "$bin/local-platform" gateway
echo "entry point: http://127.0.0.1:8080 (merged OpenAPI at /v1/openapi.json)"
echo

"$bin/local-platform" demo --base http://127.0.0.1:8080 --realdata "$REALDATA_DIR"

if [ "$once" = 1 ]; then
  exit 0
fi
echo
echo "serving on http://127.0.0.1:8080; Ctrl-C stops everything"
wait
