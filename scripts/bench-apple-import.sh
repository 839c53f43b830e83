#!/usr/bin/env bash
# Apple Health import throughput and peak memory on a generated export (release build).
# Usage: scripts/bench-apple-import.sh [size in MB, default 600]
# Two sizes are parsed so that flat memory shows: the peak RSS must not grow with the file.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb="${1:-600}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

run() { cargo run --quiet --release -p log-ingestion --example apple_import_bench -- "$@"; }

cargo build --release -p log-ingestion --example apple_import_bench
run generate "$dir/small.xml" 60
run generate "$dir/export.xml" "$size_mb"
echo "small export:"
run parse "$dir/small.xml"
echo "large export:"
run parse "$dir/export.xml"
