#!/usr/bin/env bash
# Rolls the images built by the pipeline out to one environment, migrations first.
#
#   scripts/ci/deploy.sh ENV IMAGES_DIR
#
# IMAGES_DIR holds <function>.tar OCI archives (the scanned build output). Each is copied
# byte for byte (same digest) to Artifact Registry in europe-west3, then `migrate` runs to
# completion, then every other job and service moves to its new digest. Needs gcloud
# authenticated as the environment's ci-cd account, skopeo, and GCP_PROJECT_ID.
set -euo pipefail
cd "$(dirname "$0")/../.."

env=${1:?staging or production}
images=${2:?directory of OCI archives}
project=${GCP_PROJECT_ID:?}
region=europe-west3
registry="$region-docker.pkg.dev/$project/dta-wide"
evidence="terraform/evidence/$env/cloudrun-deploy"
tag=${GITHUB_SHA:-$(git rev-parse HEAD)}

gcloud auth print-access-token | skopeo login --username oauth2accesstoken --password-stdin "$region-docker.pkg.dev"

declare -A digest
for archive in "$images"/*.tar; do
  fn=$(basename "$archive" .tar)
  skopeo copy --quiet --preserve-digests "oci-archive:$archive" "docker://$registry/$fn:$tag"
  digest[$fn]=$(skopeo inspect --format '{{.Digest}}' "docker://$registry/$fn:$tag")
  echo "$fn -> $registry/$fn@${digest[$fn]}"
done

if [ -n "${digest[migrate]:-}" ]; then
  gcloud run jobs update migrate --region "$region" --project "$project" --image "$registry/migrate@${digest[migrate]}" --quiet
  gcloud run jobs execute migrate --region "$region" --project "$project" --wait --quiet
fi

for fn in "${!digest[@]}"; do
  [ "$fn" = migrate ] && continue
  image="$registry/$fn@${digest[$fn]}"
  if [ -f "$evidence/$fn/job.yaml" ]; then
    gcloud run jobs update "$fn" --region "$region" --project "$project" --image "$image" --quiet
  elif [ -f "$evidence/$fn/service.yaml" ]; then
    gcloud run services update "$fn" --region "$region" --project "$project" --image "$image" --quiet
  else
    echo "$fn is not defined in terraform/evidence/$env: not deployed" >&2
    exit 1
  fi
done
