#!/usr/bin/env bash
# Prints, as a JSON array, the deployable functions whose image must be rebuilt for the
# commits BASE..HEAD. A change to shared code (common/, Cargo.*, the Dockerfile) or to
# migrations/ rebuilds every function; otherwise only those under functions/<name>/ changed.
# Deployable = has a Cloud Run definition in the generated evidence (terraform/evidence).
#
#   scripts/ci/changed-functions.sh BASE HEAD     e.g. '["auth","migrate"]'
set -euo pipefail
cd "$(dirname "$0")/../.."

base=${1:?base commit}
head=${2:?head commit}
evidence=terraform/evidence/production/cloudrun-deploy

mapfile -t deployable < <(find "$evidence" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)

# A new branch or a force push has no usable base: build everything.
if ! git cat-file -e "${base}^{commit}" 2>/dev/null; then
  changed_all=1
else
  changed_all=0
  mapfile -t files < <(git diff --name-only "$base" "$head")
fi

selected=()
for fn in "${deployable[@]}"; do
  hit=$changed_all
  if [ "$hit" = 0 ]; then
    for f in "${files[@]}"; do
      case "$f" in
        common/* | Cargo.toml | Cargo.lock | Dockerfile | .dockerignore | migrations/* | "functions/$fn/"*) hit=1; break ;;
      esac
    done
  fi
  [ "$hit" = 1 ] && selected+=("$fn")
done

printf '['
sep=''
for fn in "${selected[@]}"; do printf '%s"%s"' "$sep" "$fn"; sep=','; done
printf ']\n'
