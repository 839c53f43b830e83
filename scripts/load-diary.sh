#!/usr/bin/env bash
# Load test of POST /v1/sleep-logs at 80 concurrent connections (Cloud Run's per-instance
# concurrency), next to pgbench running the same INSERT (plus its outbox and audit rows) with
# the same pool size, so the endpoint's rate can be read as a share of what the database gives. Bounded:
# DURATION seconds per phase, loopback only. Needs wrk and pgbench (installed from Debian's
# packages if missing). COMMENT=1 adds a free-text comment, the envelope-encrypted field.
# Both sides reach PostgreSQL the same way, over TLS when the server offers it (as production
# does, `sslmode=require`); PGSSL=disable measures without it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DURATION=${DURATION:-20}
POOL=${POOL:-10}
PORT=${PORT:-18082}
USERS=32   # per side; a user has one entry per night, so nights and users spread the rows
need_command wrk wrk
need_command pgbench postgresql-contrib
ensure_postgres
ensure_redis
psql "$PG_URL_BASE/postgres" -qc "DROP DATABASE IF EXISTS dta_wide_load WITH (FORCE)"
ensure_database dta_wide_load
export DATABASE_URL="$PG_URL_BASE/dta_wide_load${PGSSL:+?sslmode=$PGSSL}"
export PGOPTIONS="-c client_min_messages=warning"   # no NOTICEs from the set-up statements

cargo build --release --locked -p sleep-diary -p migrate
rel=$(cargo_bin_dir release)
"$rel/migrate"
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT

uid() { printf '%s-0000-4000-8000-%012d' "$1" "$2"; }
psql "$DATABASE_URL" -qc "TRUNCATE users CASCADE; DROP SEQUENCE IF EXISTS load_seq; CREATE SEQUENCE load_seq"
for side in aaaaaaaa bbbbbbbb; do
  # Synthetic accounts: a unique placeholder for the (keyed) e-mail blind index, no address.
  psql "$DATABASE_URL" -qc "INSERT INTO users (id, email_lookup, password_hash)
    SELECT ('$side-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, encode(sha256(convert_to('$side-' || g || '@example.test', 'UTF8')), 'hex'), 'x' FROM generate_series(0, $USERS - 1) g;
    INSERT INTO consent_events (user_id, purpose, version, action)
    SELECT u.id, t.purpose, t.version, 'granted' FROM users u,
      (SELECT purpose, max(version) AS version FROM consent_texts WHERE purpose = 'intended_use' GROUP BY purpose) t
    WHERE u.id::text LIKE '$side%'"
done

# --- the database alone: the endpoint's statement (consent check, row, outbox event, audit
# event), POOL clients
cat >"$work/insert.sql" <<'SQL'
WITH s AS (SELECT nextval('load_seq') AS v),
d AS (INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset,
 final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min,
 tib_min, tst_min, twak_min, se_pct, nap_min, input, created_at, updated_at)
SELECT gen_random_uuid(), ('bbbbbbbb-0000-4000-8000-' || lpad((v / 9000)::text, 12, '0'))::uuid,
 '2000-01-02'::date + (v % 9000)::int, 'Etc/UTC', now(), 0, now() + interval '15 min', 0, now() + interval '450 min', 0, now() + interval '480 min', 0, 20, 1, 15, 420, 340, 30, 81.0, 0,
 '{"zone":"Etc/UTC","into_bed":"2000-01-01T23:00:00+00:00","lights_out":"2000-01-01T23:15:00+00:00","sol_min":20,"awakenings":1,"waso_min":15,"final_awakening":"2000-01-02T06:30:00+00:00","out_of_bed":"2000-01-02T07:00:00+00:00","quality":3,"naps":[],"caffeine":[],"alcohol":[],"medication":[],"comment":null}', now(), now()
FROM s WHERE (SELECT action FROM consent_events WHERE user_id = ('bbbbbbbb-0000-4000-8000-' || lpad((v / 9000)::text, 12, '0'))::uuid AND purpose = 'intended_use' ORDER BY id DESC LIMIT 1) = 'granted'
ON CONFLICT (id) DO NOTHING RETURNING created_at),
o AS (INSERT INTO outbox (event_id, topic, payload) SELECT gen_random_uuid(), 'sleep-log', '{"type":"sleep-log.recorded","version":1}' FROM d),
a AS (INSERT INTO outbox (event_id, topic, payload) SELECT gen_random_uuid(), 'audit', '{"type":"audit.recorded","version":1,"data":{"actor_ref":"a041a6bac8028eb7074f728f2e9c07b5df73290f1604a426c8ec38fbe2c77df5","subject_ref":"a041a6bac8028eb7074f728f2e9c07b5df73290f1604a426c8ec38fbe2c77df5","action":"sleep-log.created","function":"sleep-diary","object_id":null,"at":"2026-12-03T10:00:00Z"}}' FROM d)
SELECT created_at FROM d;
SQL
# Each phase starts right after a checkpoint, so neither pays for one the other caused (the
# full-page images written after a checkpoint are the largest swing between runs).
psql "$DATABASE_URL" -qc CHECKPOINT
pgbench -n -c "$POOL" -j 2 -T "$DURATION" -f "$work/insert.sql" "$DATABASE_URL" >"$work/pgbench.txt" 2>&1
pg_tps=$(awk '/^tps = / {print $3; exit}' "$work/pgbench.txt")

# --- the endpoint: session check, consent, validation, metrics, insert, outbox row
secret="load-test-key-0123456789abcdef0123456789"
now_ms=$(($(date +%s) * 1000))
tokens=()
for i in $(seq 0 $((USERS - 1))); do
  user=$(uid aaaaaaaa "$i")
  sid="load$i"
  redis-cli -h 127.0.0.1 HSET "load:sess:$sid" u "$user" abs $((now_ms + 3600000)) rt x c "$now_ms" >/dev/null
  redis-cli -h 127.0.0.1 PEXPIRE "load:sess:$sid" 3600000 >/dev/null
  tokens+=("$(python3 - "$secret" "$user" "$sid" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, user, sid = sys.argv[1].encode(), sys.argv[2], sys.argv[3]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "load"}).encode())
now = int(time.time())
body = b64(json.dumps({"sub": user, "sid": sid, "iss": "dta-wide-auth", "aud": "dta-wide-api", "iat": now, "exp": now + 3600}).encode())
print(f"{head}.{body}.{b64(hmac.new(secret, f'{head}.{body}'.encode(), hashlib.sha256).digest())}")
PY
)")
done

export PORT BIND_ADDRESS=127.0.0.1 DB_MAX_CONNECTIONS=$POOL JWT_SECRET=$secret JWT_KEY_ID=load RUST_LOG=warn
# One session per user; the per-user limit is raised so it does not cut the load.
export REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=load DATA_RATE_LIMIT_PER_MIN=100000000
# No Pub/Sub here: events stay in the outbox, as they would while Pub/Sub is away.
export PUBSUB_EMULATOR_HOST=127.0.0.1:1 OUTBOX_INTERVAL_MS=3600000
(umask 077 && echo "1=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$work/data_key")
export DATA_KEY_FILE="$work/data_key"
# Start the service from a small Python probe so "start to first answer" is measured to the
# millisecond (the probe is already running when the process is spawned).
python3 - "$work/service.pid" "$work/first_answer_ms" "$PORT" "${SERVICE_BIN:-$rel/sleep-diary}" <<'PY' &
import http.client, subprocess, sys, time
pid_file, out_file, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.monotonic()
p = subprocess.Popen([sys.argv[4]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
wait $!
pid=$(cat "$work/service.pid")
first_answer_ms=$(cat "$work/first_answer_ms")

comment=""
[ "${COMMENT:-0}" = 1 ] && comment=',"comment":"slept badly after a late coffee"'
lua_tokens=$(printf '"%s",' "${tokens[@]}")
cat >"$work/post.lua" <<LUA
local tokens = {${lua_tokens}}
local per_thread = 16
local n_threads = 0
setup = function(thread) thread:set("tid", n_threads); n_threads = n_threads + 1 end
local counter = 0
request = function()
  local u = tid * per_thread + (counter % per_thread)
  local day = 946771200 + math.floor(counter / per_thread) * 86400   -- from 2000-01-02
  counter = counter + 1
  local night, prev = os.date("!%Y-%m-%d", day), os.date("!%Y-%m-%d", day - 86400)
  local id = string.format("%08x-0000-4000-8000-%012x", u, counter)
  local body = '{"id":"' .. id .. '","zone":"Etc/UTC","into_bed":"' .. prev .. 'T23:00:00+00:00","lights_out":"' .. prev ..
    'T23:15:00+00:00","sol_min":20,"awakenings":1,"waso_min":15,"final_awakening":"' .. night .. 'T06:30:00+00:00","out_of_bed":"' ..
    night .. 'T07:00:00+00:00","quality":3$comment}'
  return wrk.format("POST", "/v1/sleep-logs", {["Content-Type"]="application/json", ["Authorization"]="Bearer " .. tokens[u + 1]}, body)
end
LUA
psql "$DATABASE_URL" -qc CHECKPOINT
# CPU time (user + system, clock ticks) of a set of processes: the service's, and PostgreSQL's.
ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done | awk '{t += $1} END {print t + 0}'; }
# PostgreSQL's: its live processes, plus the backends that have exited (a connection closed
# during the run), which the kernel adds to the postmaster's children's time.
pg_ticks() {
  echo $(($(ticks $(pgrep -u postgres)) + $(for p in $(pgrep -u postgres -P 1); do awk '{print $16 + $17}' "/proc/$p/stat"; done | awk '{t += $1} END {print t + 0}')))
}
svc0=$(ticks "$pid"); pg0=$(pg_ticks)
wrk -t 2 -c 80 -d "${DURATION}s" --latency -s "$work/post.lua" "http://127.0.0.1:$PORT" >"$work/wrk.txt"
svc1=$(ticks "$pid"); pg1=$(pg_ticks)
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
stored=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM diary_entries WHERE user_id::text LIKE 'aaaaaaaa%'")
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

cat "$work/wrk.txt"
rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")
p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt")
echo
echo "pgbench INSERT + outbox, $POOL clients:  ${pg_tps} tps"
echo "POST /v1/sleep-logs, 80 connections:   ${rps} req/s ($(awk -v a="$rps" -v b="$pg_tps" 'BEGIN {printf "%.0f", 100*a/b}') % of pgbench), p50 ${p50}, p99 ${p99}, non-2xx ${non2xx:-0}, comment ${COMMENT:-0}"
echo "rows stored:                           ${stored}"
hz=$(getconf CLK_TCK)
# Per stored row. PostgreSQL's figure counts every server process, the pool's backends (opened
# during the run, counted whole; closed ones too) and the WAL writer and checkpointer as well.
echo "CPU per request:                       service $(awk -v d=$((svc1 - svc0)) -v n="$stored" -v hz="$hz" 'BEGIN {printf "%.0f", d / hz * 1e6 / n}') µs, PostgreSQL $(awk -v d=$((pg1 - pg0)) -v n="$stored" -v hz="$hz" 'BEGIN {printf "%.0f", d / hz * 1e6 / n}') µs"
echo "peak RSS:                              $((rss_kib / 1024)) MiB (${rss_kib} KiB)"
echo "process start to first answer:         ${first_answer_ms} ms"
