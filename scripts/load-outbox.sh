#!/usr/bin/env bash
# Outbox drain rate: EVENTS rows (default 20000) wait in the outbox, then one sleep-diary
# instance starts and drains them to the Pub/Sub emulator; prints events per second until the
# outbox is empty. Bounded: gives up after TIMEOUT seconds (default 300). Loopback only.
# SERVICE_BIN runs another build (A/B).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/emulators.sh

EVENTS=${EVENTS:-20000}
TIMEOUT=${TIMEOUT:-300}
PORT=${PORT:-18083}
ensure_postgres
ensure_redis
emulators_start pubsub
eval "$(emulators_env)"
psql "$PG_URL_BASE/postgres" -qc "DROP DATABASE IF EXISTS dta_wide_outbox WITH (FORCE)"
ensure_database dta_wide_outbox
export DATABASE_URL="$PG_URL_BASE/dta_wide_outbox"
cargo build --release --locked -p sleep-diary -p migrate
rel=$(cargo_bin_dir release)
"$rel/migrate"

# A project of its own (the emulator keeps topics until it stops), with both topics.
project="outbox-load-$(date +%s)-$$"
for topic in sleep-log audit; do
  curl -sf -X PUT -H 'Content-Type: application/json' -d '{}' \
    "http://$PUBSUB_EMULATOR_HOST/v1/projects/$project/topics/$topic" >/dev/null
done
psql "$DATABASE_URL" -qc "INSERT INTO outbox (event_id, topic, payload)
  SELECT gen_random_uuid(), CASE WHEN g % 2 = 0 THEN 'sleep-log' ELSE 'audit' END,
    jsonb_build_object('type', 'load.test', 'version', 1, 'data', jsonb_build_object('n', g))
  FROM generate_series(1, $EVENTS) g"

work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
(umask 077 && echo "1=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$work/data_key")
PORT=$PORT BIND_ADDRESS=127.0.0.1 DB_MAX_CONNECTIONS=10 RUST_LOG=warn \
  JWT_SECRET=load-test-key-0123456789abcdef0123456789 JWT_KEY_ID=load \
  REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=load DATA_KEY_FILE="$work/data_key" \
  PUBSUB_PROJECT=$project OUTBOX_INTERVAL_MS=200 \
  "${SERVICE_BIN:-$rel/sleep-diary}" >"$work/service.log" 2>&1 &
pid=$!
t0=$(date +%s.%N)
left=$EVENTS
while [ "$left" -gt 0 ]; do
  sleep 0.2
  left=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM outbox")
  if awk -v a="$(date +%s.%N)" -v b="$t0" -v t="$TIMEOUT" 'BEGIN {exit !(a - b > t)}'; then
    echo "gave up after ${TIMEOUT} s with $left events left" >&2
    break
  fi
done
t1=$(date +%s.%N)
failed=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM outbox WHERE attempts > 0")
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
awk -v n=$((EVENTS - left)) -v a="$t1" -v b="$t0" -v f="$failed" \
  'BEGIN {printf "drained %d events in %.1f s: %.0f events/s (rows with a failed attempt: %d)\n", n, a - b, n / (a - b), f}'
