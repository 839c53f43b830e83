#!/usr/bin/env bash
# Load test of POST /v1/sleep-logs at 80 concurrent connections (Cloud Run's per-instance
# concurrency), next to pgbench running the same INSERT with the same pool size, so the
# endpoint's rate can be read as a share of what the database gives. Bounded: DURATION seconds
# per phase, loopback only. Needs wrk and pgbench (installed from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DURATION=${DURATION:-20}
POOL=${POOL:-10}
PORT=${PORT:-18082}
command -v wrk >/dev/null || apt_install wrk
command -v pgbench >/dev/null || apt_install postgresql-contrib
ensure_postgres
ensure_database dta_wide_load
export DATABASE_URL="$PG_URL_BASE/dta_wide_load"

cargo build --release --locked -p sleep-diary -p migrate
target/release/migrate
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

user=$(psql "$DATABASE_URL" -qtAc "INSERT INTO users (id, email, password_hash) VALUES (gen_random_uuid(), 'load-' || gen_random_uuid() || '@example.test', 'x') RETURNING id")
psql "$DATABASE_URL" -qc "TRUNCATE diary_entries"

# --- the database alone: the endpoint's INSERT, POOL clients
cat >"$work/insert.sql" <<SQL
INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset,
 final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min,
 tib_min, tst_min, twak_min, se_pct, nap_min, input)
VALUES (gen_random_uuid(), '$user', '2025-03-30', 'Europe/Berlin', '2025-03-29 22:00:00+00', 3600, '2025-03-29 22:15:00+00', 3600,
 '2025-03-30 04:30:00+00', 7200, '2025-03-30 05:00:00+00', 7200, 20, 1, 15, 420, 340, 30, 81.0, 0,
 '{"zone":"Europe/Berlin","into_bed":"2025-03-29T23:00:00+01:00","lights_out":"2025-03-29T23:15:00+01:00","sol_min":20,"awakenings":1,"waso_min":15,"final_awakening":"2025-03-30T06:30:00+02:00","out_of_bed":"2025-03-30T07:00:00+02:00","quality":3,"naps":[],"caffeine":[],"alcohol":[],"medication":[],"comment":null}')
ON CONFLICT (id) DO NOTHING RETURNING id;
SQL
pgbench -n -c "$POOL" -j 2 -T "$DURATION" -f "$work/insert.sql" "$DATABASE_URL" >"$work/pgbench.txt" 2>&1
pg_tps=$(awk '/^tps = / {print $3; exit}' "$work/pgbench.txt")
psql "$DATABASE_URL" -qc "TRUNCATE diary_entries"

# --- the endpoint: token check, validation, metrics, insert (and the read-back)
secret="load-test-key-0123456789abcdef0123456789"
export PORT BIND_ADDRESS=127.0.0.1 DB_MAX_CONNECTIONS=$POOL JWT_SECRET=$secret JWT_KEY_ID=load RUST_LOG=warn
# Start the service from a small Python probe so "start to first answer" is measured to the
# millisecond (the probe is already running when the process is spawned).
python3 - "$work/service.pid" "$work/first_answer_ms" "$PORT" <<'PY' &
import http.client, os, subprocess, sys, time
pid_file, out_file, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.monotonic()
p = subprocess.Popen(["target/release/sleep-diary"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open(pid_file, "w").write(str(p.pid))
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/healthz")
        if c.getresponse().status == 200:
            break
    except OSError:
        time.sleep(0.0005)
open(out_file, "w").write(f"{(time.monotonic() - t0) * 1000:.1f}")
PY
probe=$!
wait "$probe"
pid=$(cat "$work/service.pid")
first_answer_ms=$(cat "$work/first_answer_ms")

token=$(python3 - "$secret" "$user" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, user = sys.argv[1].encode(), sys.argv[2]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "load"}).encode())
now = int(time.time())
body = b64(json.dumps({"sub": user, "iss": "dta-wide-auth", "aud": "dta-wide-api", "iat": now, "exp": now + 3600}).encode())
sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
)
cat >"$work/post.lua" <<LUA
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local id = string.format("%08x-0000-4000-8000-%012x", tid, counter)
  local body = '{"id":"' .. id .. '","zone":"Europe/Berlin","into_bed":"2025-03-29T23:00:00+01:00","lights_out":"2025-03-29T23:15:00+01:00","sol_min":20,"awakenings":1,"waso_min":15,"final_awakening":"2025-03-30T06:30:00+02:00","out_of_bed":"2025-03-30T07:00:00+02:00","quality":3}'
  return wrk.format("POST", "/v1/sleep-logs", {["Content-Type"]="application/json", ["Authorization"]="Bearer $token"}, body)
end
LUA
wrk -t 2 -c 80 -d "${DURATION}s" --latency -s "$work/post.lua" "http://127.0.0.1:$PORT" >"$work/wrk.txt"
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
stored=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM diary_entries")
kill -TERM "$pid"; wait "$pid" || true

cat "$work/wrk.txt"
rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt")
echo
echo "pgbench INSERT, $POOL clients:         ${pg_tps} tps"
echo "POST /v1/sleep-logs, 80 connections:  ${rps} req/s ($(awk -v a="$rps" -v b="$pg_tps" 'BEGIN {printf "%.0f", 100*a/b}') % of pgbench), p99 ${p99}, non-2xx ${non2xx:-0}"
echo "rows stored:                          ${stored}"
echo "peak RSS:                             $((rss_kib / 1024)) MiB (${rss_kib} KiB)"
echo "process start to first answer:        ${first_answer_ms} ms"
