#!/usr/bin/env bash
# Push-handler throughput: 80 concurrent Pub/Sub-style pushes (Cloud Run's concurrency) of
# sleep-log.recorded events for many users against a release build of sleep-analysis, with
# real PostgreSQL and the Firestore emulator. Loopback only; bounded by COUNT messages.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

COUNT=${COUNT:-4000}
USERS=${USERS:-400}
PORT=${PORT:-18090}
need_command curl curl
ensure_postgres
scripts/emulators.sh start firestore
eval "$(scripts/emulators.sh env)"
ensure_database dta_wide_push
export DATABASE_URL="$PG_URL_BASE/dta_wide_push"
cargo build --release --locked -p sleep-analysis -p migrate
rel=$(cargo_bin_dir release)
"$rel/migrate"
psql "$DATABASE_URL" -qc "TRUNCATE users CASCADE; TRUNCATE processed_events, undeliverable_events"
# Synthetic accounts: a unique placeholder for the (keyed) e-mail blind index, no address.
psql "$DATABASE_URL" -qc "INSERT INTO users (id, email_lookup, password_hash) SELECT gen_random_uuid(), encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'hex'), 'x' FROM generate_series(1, $USERS) g"

work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
PORT=$PORT BIND_ADDRESS=127.0.0.1 DB_MAX_CONNECTIONS=10 PUSH_AUTH_DISABLED=true RUST_LOG=warn \
  FIRESTORE_PROJECT="load-$(date +%s)" JWT_SECRET=load-test-key-0123456789abcdef0123456789 \
  "$rel/sleep-analysis" >"$work/service.log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.05; done

psql "$DATABASE_URL" -qtAc "SELECT id FROM users" >"$work/users.txt"
python3 - "$PORT" "$COUNT" "$work/users.txt" <<'PY'
import base64, concurrent.futures, datetime, http.client, json, sys, threading, time, uuid
port, count, users_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
users = [u.strip() for u in open(users_file) if u.strip()]
base = datetime.date(2025, 3, 3)
def body(i):
    user = users[i % len(users)]
    night = base + datetime.timedelta(days=i // len(users))
    d = night.isoformat(); p = (night - datetime.timedelta(days=1)).isoformat()
    event = {"type": "sleep-log.recorded", "version": 1, "id": str(uuid.uuid4()), "occurred_at": "2026-12-03T10:00:00Z",
             "data": {"user_id": user, "entry_id": str(uuid.uuid4()), "change": "created", "night": d, "revision": "2026-12-03T10:00:00Z",
                      "summary": {"night": d, "zone": "Europe/Berlin", "start": p + "T23:00:00+01:00", "end": d + "T07:00:00+01:00",
                                  "final_awakening": d + "T06:30:00+01:00", "tib_min": 480, "tst_min": 360, "sol_min": 30, "waso_min": 40}}}
    mid = f"load-{i}"
    return json.dumps({"subscription": "projects/p/subscriptions/sleep-analysis",
                       "message": {"data": base64.b64encode(json.dumps(event).encode()).decode(), "messageId": mid, "message_id": mid}}).encode()
bodies = [body(i) for i in range(count)]
local = threading.local()
def send(b):
    c = getattr(local, "c", None)
    if c is None:
        c = local.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t = time.perf_counter()
    c.request("POST", "/pubsub/push", b, {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    return r.status, time.perf_counter() - t
start = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(80) as pool:
    results = list(pool.map(send, bodies))
elapsed = time.perf_counter() - start
lat = sorted(l for _, l in results)
statuses = {}
for s, _ in results: statuses[s] = statuses.get(s, 0) + 1
print(f"{count} pushes, 80 concurrent: {count / elapsed:.0f} messages/s, p50 {lat[len(lat)//2]*1000:.0f} ms, p99 {lat[int(len(lat)*0.99)]*1000:.0f} ms, statuses {statuses}")
PY
echo "processed_events rows: $(psql "$DATABASE_URL" -tAc 'SELECT count(*) FROM processed_events')"
