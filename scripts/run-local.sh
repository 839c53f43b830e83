#!/usr/bin/env bash
# The local platform: installs and starts PostgreSQL and Redis if needed, builds the workspace,
# migrates, starts every HTTP function behind one entry point on 127.0.0.1:8080 with the
# production paths, imports the sample files for a demo user and prints the nights.
# Keeps serving until Ctrl-C; with --once it stops after printing. The local database
# `dta_wide` is kept between runs (the demo is idempotent); --fresh drops it first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

once=0
fresh=0
for arg in "$@"; do
  case "$arg" in
    --once) once=1 ;;
    --fresh) fresh=1 ;;
    *) echo "usage: scripts/run-local.sh [--once] [--fresh]" >&2; exit 2 ;;
  esac
done

need_command curl curl
ensure_postgres
ensure_redis
scripts/emulators.sh start
eval "$(scripts/emulators.sh env)"
if [ "$fresh" = 1 ]; then
  # Only this script's own database; the server's other databases stay.
  psql "$PG_URL_BASE/postgres" -qc "DROP DATABASE IF EXISTS dta_wide WITH (FORCE)"
  rm -f target/local/demo-totp-secret target/local/email_lookup_key
  rm -rf target/local/mail
fi
ensure_database dta_wide
REALDATA_DIR=$(realdata_dir)

cargo build --workspace --bins --locked
bin=$(cargo_bin_dir debug)
run_dir=target/local
mkdir -p "$run_dir"

# A development-only signing key, kept with the local run state.
if [ ! -s "$run_dir/jwt_secret" ]; then
  head -c 48 /dev/urandom | base64 | tr -d '\n/+=' >"$run_dir/jwt_secret"
fi
export JWT_SECRET
JWT_SECRET=$(cat "$run_dir/jwt_secret")
export JWT_KEY_ID=local-1
# The development-only wrapping key of the users' data keys (production: Cloud KMS).
if [ ! -s "$run_dir/data_key" ]; then
  (umask 077 && echo "1=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$run_dir/data_key")
fi
export DATA_KEY_FILE="$run_dir/data_key"
# The development-only secret of the e-mail blind index (production: Secret Manager
# EMAIL_LOOKUP_KEY). Kept with the run state: a new one would not find the existing accounts.
if [ ! -s "$run_dir/email_lookup_key" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run_dir/email_lookup_key")
fi
export EMAIL_LOOKUP_KEY
EMAIL_LOOKUP_KEY=$(cat "$run_dir/email_lookup_key")
export DATABASE_URL="$PG_URL_BASE/dta_wide"
export REDIS_URL="redis://127.0.0.1:6379"
export BIND_ADDRESS=127.0.0.1
export RUST_LOG="${RUST_LOG:-info}"
export PUBSUB_PROJECT=dta-wide-local FIRESTORE_PROJECT=dta-wide-local
# Local mail goes to files the demo (and a developer) can read.
export MAIL_SINK_DIR="$PWD/$run_dir/mail" DEMO_STATE_DIR="$PWD/$run_dir"

"$bin/migrate"

# The event chain: the topics of production (terraform: platform `topics`), the sleep-log push
# subscription to sleep-analysis and the audit push subscription to privacy, like production's
# (which adds the OIDC token; the emulator sends none, so verification is off here). Made
# before any producer starts, so no event meets a missing topic (the drainer stops at one).
emu="http://$PUBSUB_EMULATOR_HOST/v1/projects/$PUBSUB_PROJECT"
for topic in sleep-log questionnaire safety audit; do
  curl -sf -X PUT "$emu/topics/$topic" -H 'content-type: application/json' -d '{}' >/dev/null || true
done
# ensure_push_subscription NAME TOPIC ENDPOINT: the subscription exists and pushes to ENDPOINT.
# The emulator is shared and outlives a run: one left by an earlier run (or another checkout)
# with a different endpoint gets this run's endpoint (409 on create, then modifyPushConfig).
ensure_push_subscription() {
  local name=$1 topic=$2 endpoint=$3 status
  status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$emu/subscriptions/$name" \
    -H 'content-type: application/json' \
    -d "{\"topic\": \"projects/$PUBSUB_PROJECT/topics/$topic\", \"pushConfig\": {\"pushEndpoint\": \"$endpoint\"}, \"ackDeadlineSeconds\": 30}")
  case $status in
    200) ;;
    409)
      curl -sf -X POST "$emu/subscriptions/$name:modifyPushConfig" -H 'content-type: application/json' \
        -d "{\"pushConfig\": {\"pushEndpoint\": \"$endpoint\"}}" >/dev/null || {
        echo "could not point the subscription $name at $endpoint" >&2
        exit 1
      }
      ;;
    *)
      echo "creating the subscription $name on the Pub/Sub emulator answered HTTP $status" >&2
      exit 1
      ;;
  esac
}
ensure_push_subscription sleep-analysis sleep-log http://127.0.0.1:8090/pubsub/push
ensure_push_subscription privacy-audit audit http://127.0.0.1:8088/pubsub/audit

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
PUSH_AUTH_DISABLED=true start privacy 8088 "$bin/privacy"
routes="$routes,/v1/me=http://127.0.0.1:8088"
PUSH_AUTH_DISABLED=true start sleep-analysis 8090 "$bin/sleep-analysis"
routes="$routes,/v1/sleep-window=http://127.0.0.1:8090"
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
