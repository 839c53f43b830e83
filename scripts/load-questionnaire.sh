#!/usr/bin/env bash
# Load test of POST /v1/questionnaire-responses at 80 concurrent connections (Cloud Run's
# per-instance concurrency): token check, validation, scoring and the insert of response and
# score in one transaction. INSTRUMENT=isi (default) or phq9 (item 9 > 0, so every request
# also writes a safety event). Bounded: DURATION seconds, loopback only. Needs wrk (installed
# from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DURATION=${DURATION:-20}
POOL=${POOL:-10}
PORT=${PORT:-18083}
INSTRUMENT=${INSTRUMENT:-isi}
need_command wrk wrk
need_command curl curl
ensure_postgres
ensure_database dta_wide_load_questionnaire
export DATABASE_URL="$PG_URL_BASE/dta_wide_load_questionnaire"

cargo build --release --locked -p questionnaire-scoring -p migrate
rel=$(cargo_bin_dir release)
"$rel/migrate"
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

# A synthetic account: a unique placeholder for the (keyed) e-mail blind index, no address.
user=$(psql "$DATABASE_URL" -qtAc "INSERT INTO users (id, email_lookup, password_hash) VALUES (gen_random_uuid(), encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'hex'), 'x') RETURNING id")

case "$INSTRUMENT" in
  isi) body='{"questionnaire":"isi","answers":{"isi-1":1,"isi-2":2,"isi-3":1,"isi-4":0,"isi-5":0,"isi-6":3,"isi-7":2}}' ;;
  phq9) body='{"questionnaire":"phq-9","answers":{"phq9-1":3,"phq9-2":0,"phq9-3":1,"phq9-4":2,"phq9-5":0,"phq9-6":0,"phq9-7":1,"phq9-8":0,"phq9-9":3}}' ;;
  *) echo "INSTRUMENT must be isi or phq9" >&2; exit 2 ;;
esac

secret="load-test-key-0123456789abcdef0123456789"
PORT=$PORT BIND_ADDRESS=127.0.0.1 DB_MAX_CONNECTIONS=$POOL JWT_SECRET=$secret JWT_KEY_ID=load RUST_LOG=warn \
  "$rel/questionnaire-scoring" >"$work/service.log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.01; done

token=$(python3 - "$secret" "$user" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, user = sys.argv[1].encode(), sys.argv[2]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "load"}).encode())
now = int(time.time())
claims = b64(json.dumps({"sub": user, "iss": "dta-wide-auth", "aud": "dta-wide-api", "iat": now, "exp": now + 3600}).encode())
sig = b64(hmac.new(secret, f"{head}.{claims}".encode(), hashlib.sha256).digest())
print(f"{head}.{claims}.{sig}")
PY
)
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
wrk -t 2 -c 80 -d "${DURATION}s" --latency -s "$work/post.lua" "http://127.0.0.1:$PORT/v1/questionnaire-responses" >"$work/wrk.txt"
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
stored=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM questionnaire_scores s JOIN questionnaire_responses r ON r.id = s.response_id WHERE r.user_id = '$user'")
events=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM safety_events WHERE user_id = '$user'")
kill -TERM "$pid"; wait "$pid" || true
pid=""

cat "$work/wrk.txt"
rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt")
echo
echo "POST /v1/questionnaire-responses ($INSTRUMENT), 80 connections, pool $POOL: ${rps} req/s, p99 ${p99}, non-2xx ${non2xx:-0}"
echo "responses scored and stored: ${stored}; safety events: ${events}"
echo "peak RSS: $((rss_kib / 1024)) MiB"
