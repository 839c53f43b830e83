# Shared by the scripts: make sure PostgreSQL and Redis run locally, installing them from
# Debian's packages when missing. Sourced, not executed.

PG_URL_BASE="postgres://postgres:postgres@127.0.0.1:5432"

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing $*, and no apt-get to install it" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    return 0
  fi
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "installing PostgreSQL from Debian's packages"
    apt_install postgresql postgresql-client
  fi
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  local fresh=0
  if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
    pg_createcluster "$version" main >/dev/null
    fresh=1
  fi
  local cluster
  cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
  if [ "$fresh" = 1 ]; then
    # A cluster made here for local development and tests: local connections as postgres
    # without a password, the same as the development machines are set up.
    local hba="/etc/postgresql/${cluster% *}/${cluster#* }/pg_hba.conf"
    printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' >"$hba"
  fi
  # shellcheck disable=SC2086
  pg_ctlcluster --skip-systemctl-redirect $cluster start
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.2
  done
  echo "PostgreSQL did not start" >&2
  return 1
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    return 0
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing Redis from Debian's packages"
    apt_install redis-server
  fi
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/redis-dta-wide.log
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "Redis did not start" >&2
  return 1
}

# Creates a database if it does not exist.
ensure_database() {
  local name=$1
  if ! psql "$PG_URL_BASE/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
    psql "$PG_URL_BASE/postgres" -qc "CREATE DATABASE \"$name\""
  fi
}

# The folder with the real sample files, beside the repository.
realdata_dir() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  for d in "$root/../shared/realdata" "$root/shared/realdata"; do
    if [ -d "$d" ]; then
      (cd "$d" && pwd)
      return 0
    fi
  done
  echo "shared/realdata not found beside the repository" >&2
  return 1
}
