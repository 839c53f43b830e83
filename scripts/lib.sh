# shellcheck shell=bash
# Shared by the scripts: make sure the services and tools they need are there, starting them
# when not running and installing them from Debian's packages when missing. Sourced, not
# executed. Every ensure_* function is idempotent and quiet when the thing is already there.

# The local default server (PG_LOCAL_PORT, 5432 unless set); the scripts connect to it over
# TCP as postgres.
PG_LOCAL_PORT=${PG_LOCAL_PORT:-5432}
PG_URL_BASE="postgres://postgres:postgres@127.0.0.1:$PG_LOCAL_PORT"
REDIS_URL_DEFAULT="redis://127.0.0.1:6379"

# Runs a command as root (through sudo when not root).
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

# apt_install PACKAGE...: installs the packages that are not installed yet (nothing, and no
# output, when all are); apt-get update runs once per script run.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing ${missing[*]}, and no apt-get to install it" >&2
    return 1
  fi
  echo "installing ${missing[*]} from the Debian packages" >&2
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  # env, not a prefix assignment: sudo drops the caller's environment.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# need_command COMMAND PACKAGE: installs PACKAGE when COMMAND is not on the search path (as a
# file: `kill` is also a shell builtin, the tests run /usr/bin/kill).
need_command() {
  type -P "$1" >/dev/null 2>&1 || apt_install "$2"
}

# The tools the test suite runs besides cargo: openssl (OIDC token tests), kill from procps
# (platform tests), curl, and python3 with venv (fake-gcs-server, the infrastructure checks).
ensure_test_tools() {
  need_command curl curl
  need_command openssl openssl
  need_command kill procps
  need_command python3 python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
}

# rustfmt and clippy, from rustup when missing.
ensure_rust_components() {
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  [ ${#missing[@]} -gt 0 ] || return 0
  if ! command -v rustup >/dev/null 2>&1; then
    echo "missing the Rust components ${missing[*]}, and no rustup to add them" >&2
    return 1
  fi
  echo "adding the Rust components ${missing[*]}" >&2
  rustup component add "${missing[@]}"
}

# cargo-nextest, built from crates.io when missing. Returns 1 (after saying so) if it cannot
# be installed; the caller falls back to cargo test.
ensure_nextest() {
  cargo nextest --version >/dev/null 2>&1 && return 0
  echo "installing cargo-nextest (cargo install --locked cargo-nextest; a few minutes once)" >&2
  cargo install --locked cargo-nextest >&2 && cargo nextest --version >/dev/null 2>&1
}

# Cargo's target directory (CARGO_TARGET_DIR, build.target-dir in a config, or ./target),
# as cargo itself reports it.
cargo_target_dir() {
  if [ -z "${CARGO_TARGET_DIRECTORY_CACHED:-}" ]; then
    CARGO_TARGET_DIRECTORY_CACHED=$(cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  fi
  echo "$CARGO_TARGET_DIRECTORY_CACHED"
}

# cargo_bin_dir PROFILE (debug or release): where cargo puts that profile's binaries.
cargo_bin_dir() {
  local dir
  dir=$(cargo_target_dir) || return 1
  echo "$dir/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}$1"
}

# url_host_port URL DEFAULT_PORT: prints "host port" of a postgres:// or redis:// URL.
url_host_port() {
  local rest=${1#*://}
  rest=${rest%%/*}
  rest=${rest%%\?*}
  rest=${rest##*@}
  local host port
  case $rest in
    \[*\]:*) host=${rest%%]:*}; host=${host#[}; port=${rest##*]:} ;;
    \[*\]) host=${rest#[}; host=${host%]}; port=$2 ;;
    *:*) host=${rest%:*}; port=${rest##*:} ;;
    *) host=$rest; port=$2 ;;
  esac
  echo "${host:-127.0.0.1} ${port:-$2}"
}

# True for the server the scripts may start and install themselves: 127.0.0.1 (or localhost)
# on the default port.
is_local_default() { # host port default-port
  case $1 in 127.0.0.1 | localhost) [ "$2" = "$3" ] ;; *) return 1 ;; esac
}

pg_accepts() { # url
  PGCONNECT_TIMEOUT=5 psql -w "$1" -tAc "SELECT 1" 2>/dev/null | grep -q 1
}

# pg_trust_loopback VERSION CLUSTER: lets connections from 127.0.0.1 and ::1 in without a
# password. Only for a developer or CI machine, where the database holds test data and
# nothing listens beyond loopback; never on a server. Debian's package creates its cluster
# with scram-sha-256 for host connections and no password for postgres, so without this the
# scripts' postgres@127.0.0.1 cannot connect. The lines go first (pg_hba.conf is first
# match), the rest of the file stays; idempotent.
pg_trust_loopback() {
  local hba="/etc/postgresql/$1/$2/pg_hba.conf"
  local marker="# dta-wide: local development and tests, loopback without a password"
  if as_root grep -qF "$marker" "$hba"; then
    return 0
  fi
  echo "configuring PostgreSQL $1/$2 for password-less loopback connections ($hba)" >&2
  local tmp
  tmp=$(mktemp)
  {
    echo "$marker"
    echo "host all all 127.0.0.1/32 trust"
    echo "host all all ::1/128 trust"
    echo
    as_root cat "$hba"
  } >"$tmp"
  as_root cp "$tmp" "$hba"
  rm -f "$tmp"
}

# ensure_postgres [URL]: PostgreSQL answers at URL (default: the local server on
# 127.0.0.1:$PG_LOCAL_PORT). Only the local default is installed, created, configured and started here;
# any other server must already answer.
ensure_postgres() {
  local url=${1:-$PG_URL_BASE/postgres} host port
  read -r host port <<<"$(url_host_port "$url" 5432)"
  need_command psql postgresql-client
  need_command pg_isready postgresql-client
  if ! is_local_default "$host" "$port" "$PG_LOCAL_PORT"; then
    pg_accepts "$url" && return 0
    echo "PostgreSQL at $host:$port (DATABASE_URL) does not accept the connection;" \
      "only 127.0.0.1:$PG_LOCAL_PORT is started here" >&2
    return 1
  fi
  if pg_isready -q -h 127.0.0.1 -p "$PG_LOCAL_PORT" 2>/dev/null && pg_accepts "$url"; then
    return 0
  fi
  local installed=0
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
    installed=1
  fi
  local cluster
  cluster=$(pg_local_cluster)
  if [ -z "$cluster" ]; then
    if pg_isready -q -h 127.0.0.1 -p "$PG_LOCAL_PORT" 2>/dev/null; then
      echo "the PostgreSQL on 127.0.0.1:$PG_LOCAL_PORT refuses $url and is not a Debian cluster" \
        "this script can configure" >&2
      return 1
    fi
    # Debian's package usually made "main" on 5432 already; otherwise one is made here.
    local version name=main
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    if pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
      name=dta-wide
    fi
    as_root pg_createcluster --port "$PG_LOCAL_PORT" "$version" "$name" >/dev/null
    cluster="$version $name"
    installed=1
  fi
  if ! pg_isready -q -h 127.0.0.1 -p "$PG_LOCAL_PORT" 2>/dev/null; then
    # shellcheck disable=SC2086
    as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
    for _ in $(seq 1 50); do
      pg_isready -q -h 127.0.0.1 -p "$PG_LOCAL_PORT" && break
      sleep 0.2
    done
    if ! pg_isready -q -h 127.0.0.1 -p "$PG_LOCAL_PORT"; then
      echo "PostgreSQL $cluster did not start" >&2
      return 1
    fi
  fi
  # A package or cluster made here, or one that refuses postgres@127.0.0.1: loopback trust.
  if [ "$installed" = 1 ] || ! pg_accepts "$url"; then
    pg_trust_loopback "${cluster% *}" "${cluster#* }"
    # shellcheck disable=SC2086
    as_root pg_ctlcluster --skip-systemctl-redirect $cluster reload
    for _ in $(seq 1 25); do
      pg_accepts "$url" && return 0
      sleep 0.2
    done
    echo "PostgreSQL $cluster refuses $url even with loopback trust in" \
      "/etc/postgresql/${cluster% *}/${cluster#* }/pg_hba.conf" >&2
    return 1
  fi
}

# The Debian cluster ("VERSION NAME") configured for PG_LOCAL_PORT, if any.
pg_local_cluster() {
  pg_lsclusters -h 2>/dev/null | awk -v p="$PG_LOCAL_PORT" '$3 == p {print $1" "$2; exit}'
}

# ensure_pg_tools [URL]: pg_dump and pg_restore of at least the server's major version (the
# backup drill dumps with the newest /usr/lib/postgresql/*/bin), installing
# postgresql-client-MAJOR when older or missing.
ensure_pg_tools() {
  local url=${1:-$PG_URL_BASE/postgres} server newest
  server=$(psql -w "$url" -tAc "SHOW server_version_num") || return 1
  server=$((server / 10000))
  newest=$(ls -d /usr/lib/postgresql/*/bin/pg_restore 2>/dev/null |
    sed -E 's#.*/postgresql/([0-9]+)/bin/.*#\1#' | sort -n | tail -n 1)
  if [ -z "$newest" ] && command -v pg_restore >/dev/null 2>&1; then
    newest=$(pg_restore --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')
  fi
  if [ -z "$newest" ] || [ "$newest" -lt "$server" ]; then
    if ! apt_install "postgresql-client-$server"; then
      echo "pg_dump/pg_restore $server (the server's major version) are missing and" \
        "postgresql-client-$server is not in the configured apt sources" \
        "(PostgreSQL's own: https://wiki.postgresql.org/wiki/Apt)" >&2
      return 1
    fi
  fi
}

# ensure_redis [URL]: Redis answers at URL (default: the local one on 127.0.0.1:6379). Only
# the local default is installed and started here.
ensure_redis() {
  local url=${1:-$REDIS_URL_DEFAULT} host port
  read -r host port <<<"$(url_host_port "$url" 6379)"
  need_command redis-cli redis-tools
  if redis-cli -u "$url" ping 2>/dev/null | grep -q PONG; then
    return 0
  fi
  if ! is_local_default "$host" "$port" 6379; then
    echo "Redis at $host:$port (REDIS_URL) does not answer; only 127.0.0.1:6379 is started here" >&2
    return 1
  fi
  need_command redis-server redis-server
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

# Creates a database on the local default server if it does not exist.
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
