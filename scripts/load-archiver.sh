#!/usr/bin/env bash
# Archiver throughput against the Firestore emulator and fake-gcs-server: LOAD_DOCS documents
# (default 100 000) older than the hot window are written, then archived (query, gzip NDJSON
# chunks, upload, read back and verify, delete, manifest). Prints documents/s and MB/s.
# The emulator keeps everything in one JVM heap and slows down as it grows: 100 000 documents
# archive at a steady rate, 1 000 000 did not finish within 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

export LOAD_DOCS=${LOAD_DOCS:-100000}
scripts/emulators.sh start firestore gcs
eval "$(scripts/emulators.sh env)"
cargo test --locked -q -p log-archiver --test archive archiver_throughput_on_the_emulator \
  -- --ignored --nocapture 2>&1 | grep -oE 'LOAD .*|test result.*|panicked.*'
