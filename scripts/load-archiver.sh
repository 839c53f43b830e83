#!/usr/bin/env bash
# Archiver throughput against the Firestore emulator and fake-gcs-server: LOAD_DOCS documents
# (default 100 000) older than the hot window are written, then archived (query, gzip NDJSON
# chunks, upload, read back and verify, delete, manifest). Prints documents/s and MB/s.
# Built in release, as the job ships. The Firestore emulator is the limit, not the archiver: it
# keeps everything in one JVM heap and scans the collection group for every chunk query, so
# the rate falls as the store grows (2 cores: 100 000 documents at ~3 960 docs/s, 1 000 000 at
# ~590 docs/s, the archiver itself at a few per cent of one core). For 1 000 000 documents give
# the emulator room: start it yourself with `java -Xmx12g ...` or expect swapping.
set -euo pipefail
cd "$(dirname "$0")/.."

export LOAD_DOCS=${LOAD_DOCS:-100000}
scripts/emulators.sh start firestore gcs
eval "$(scripts/emulators.sh env)"
cargo test --release --locked -q -p log-archiver --test archive archiver_throughput_on_the_emulator \
  -- --ignored --nocapture 2>&1 | grep -oE 'LOAD .*|test result.*|panicked.*'
