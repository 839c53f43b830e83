#!/usr/bin/env bash
# Login latency (the password step: Argon2id m=19 MiB, t=2, p=1, plus one lookup and the Redis
# limiter) and the throughput of a data route behind the guard (HS256 verification + session
# check + per-user counter in one Redis round trip) with wrk on loopback. Bounded: LOGINS
# sequential logins, DURATION seconds per wrk phase. Needs wrk (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DURATION=${DURATION:-15}
CONNS=${CONNS:-80}
LOGINS=${LOGINS:-30}
need_command wrk wrk
need_command curl curl
ensure_postgres
ensure_redis
ensure_database dta_wide_load_auth
export DATABASE_URL="$PG_URL_BASE/dta_wide_load_auth" REDIS_URL="redis://127.0.0.1:6379"

cargo build --release --locked -p auth -p sleep-diary -p migrate
rel=$(cargo_bin_dir release)
"$rel/migrate"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

export BIND_ADDRESS=127.0.0.1 RUST_LOG=warn JWT_KEY_ID=load
export JWT_SECRET="load-test-key-0123456789abcdef0123456789"
export REDIS_KEY_PREFIX="load-$(date +%s)-$$" MAIL_SINK_DIR="$work/mail"
# Limits out of the way: this measures cost, not the limiter's refusals.
export AUTH_LIMIT_PER_ACCOUNT=1000000 AUTH_LIMIT_PER_IP=1000000 DATA_RATE_LIMIT_PER_MIN=1000000000
# No Pub/Sub here: events stay in the outbox. A development-only data-key wrapping key.
export PUBSUB_EMULATOR_HOST=127.0.0.1:1 OUTBOX_INTERVAL_MS=3600000
(umask 077 && echo "1=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$work/data_key")
export DATA_KEY_FILE="$work/data_key"
# A development-only secret of the e-mail blind index.
export EMAIL_LOOKUP_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PORT=18091 "$rel/auth" & pids+=($!)
PORT=18092 "$rel/sleep-diary" & pids+=($!)
for port in 18091 18092; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done

# Register, confirm, enrol TOTP, log in; then time LOGINS password steps one after another.
python3 - "$work" "$LOGINS" <<'PY'
import base64, glob, hashlib, hmac, json, os, statistics, struct, sys, time, urllib.request
work, logins = sys.argv[1], int(sys.argv[2])
base = "http://127.0.0.1:18091/v1/auth"
def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
email = f"load-{os.getpid()}-{int(time.time())}@example.test"
password = "load test passphrase 2026"
assert post("/register", {"email": email, "password": password})[0] == 202
mail = json.load(open(sorted(glob.glob(f"{work}/mail/*.json"))[-1]))
token = next(l[7:] for l in mail["text"].splitlines() if l.startswith("Token: "))
assert post("/email-verification", {"token": token})[0] == 204
_, ch = post("/login", {"email": email, "password": password})
_, enrol = post("/login/totp-enrolment", {"mfa_token": ch["mfa_token"]})
key = base64.b32decode(enrol["secret"] + "=" * (-len(enrol["secret"]) % 8))
mac = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
o = mac[-1] & 15
code = "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)
status, tokens = post("/login/second-factor", {"mfa_token": ch["mfa_token"], "code": code})
assert status == 200, tokens
open(f"{work}/access_token", "w").write(tokens["access_token"])
times = []
for _ in range(logins):
    t0 = time.perf_counter()
    status, _ = post("/login", {"email": email, "password": password})
    times.append((time.perf_counter() - t0) * 1000)
    assert status == 200
times.sort()
print(f"login (password step) over {logins} sequential requests: median {statistics.median(times):.1f} ms, "
      f"p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms, min {times[0]:.1f} ms")
PY

token=$(cat "$work/access_token")
url="http://127.0.0.1:18092/v1/sleep-logs?from=2025-03-01&to=2025-03-07"
test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url")" = 200
echo "--- GET /v1/sleep-logs behind the guard, $CONNS connections, ${DURATION}s"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $token" "$url" | sed -n '1,20p'
echo "--- GET /healthz on the same service (no token, no guard), for comparison"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:18092/healthz" | sed -n '1,20p'
