#!/usr/bin/env bash
# End-to-end checks against a deployed environment through its public entry point
# (load balancer, Cloud Armor, TLS policy, routing), then the workspace's E2E tests if any.
#
#   scripts/ci/e2e-staging.sh https://api.staging.example
set -euo pipefail
cd "$(dirname "$0")/../.."

base=${1:?base URL}
host=${base#https://}
failures=0
check() { # description, command...
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; failures=$((failures + 1)); fi
}
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$@"; }

check "TLS 1.2 is accepted" test "$(status --tlsv1.2 "$base/v1/questionnaires")" != 000
check "TLS 1.1 is refused" test "$(status --tlsv1.1 --tls-max 1.1 "$base/v1/questionnaires")" = 000
check "no plain HTTP listener" test "$(status "http://$host/v1/questionnaires")" = 000
for path in /v1/sleep-logs /v1/me /v1/questionnaire-responses /v1/sleep-window; do
  check "$path without a token is 401" test "$(status "$base$path")" = 401
done
unknown=$(status "$base/v1/no-such-route")
check "unknown path is refused (401 or 404, not $unknown)" test "$unknown" = 404 -o "$unknown" = 401

if cargo test --workspace --locked --test e2e --no-run >/dev/null 2>&1; then
  E2E_BASE_URL=$base cargo test --workspace --locked --test e2e -- --test-threads 1
fi

[ "$failures" = 0 ]
