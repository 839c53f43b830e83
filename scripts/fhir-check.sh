#!/usr/bin/env bash
# FHIR R4 validation of what the questionnaire code and the privacy export emit: the tests write every Questionnaire,
# QuestionnaireResponse, Observation and CodeSystem they build (the round trip included) into
# a fresh directory, then scripts/validate-fhir.py checks them with the R4 models of
# fhir.resources. Needs DATABASE_URL for the service tests (scripts/test.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/fhir-out
rm -rf "$out"
mkdir -p "$out"
export FHIR_OUT_DIR="$PWD/$out"
cargo test --locked -p common --lib questionnaire::fhir
cargo test --locked -p questionnaire-scoring --test api
cargo test --locked -p privacy --test export
python3 scripts/validate-fhir.py "$out"
