#!/usr/bin/env bash
# Apple Health import throughput and peak memory on generated exports (release build).
# Usage: scripts/bench-apple-import.sh [size in MB, default 600]
#
# Three files: a small one with a year of nights, a large one with a night every day, and a
# large one with the same year of nights as the small one. Memory is flat in file size when
# the third peaks where the first does: only sleep records are kept, everything else streams by.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb="${1:-600}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

run() { cargo run --quiet --release -p log-ingestion --example apple_import_bench -- "$@"; }

cargo build --release -p log-ingestion --example apple_import_bench
run generate "$dir/small.xml" 60
run generate "$dir/large.xml" "$size_mb"
run generate "$dir/large-one-year-of-sleep.xml" "$size_mb" 365
for name in small large large-one-year-of-sleep; do
  printf '%s: ' "$name"
  run parse "$dir/$name.xml"
done
