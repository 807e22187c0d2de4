#!/bin/sh
# One-shot setup of a Param-Mix Prefect server: the store's bucket (for an s3:// store), the
# process work pool, and every deployment of deployments/prefect.yaml with one experiment
# config as its default parameters. Idempotent: re-running updates the deployments.
# Env: PREFECT_API_URL; PARAMMIX_CONFIG (default configs/micro.yaml); PARAMMIX_STORE_URL and
# PARAMMIX_S3_ENDPOINT (the store the deployed config writes to); AWS_* keys for the bucket.
set -eu
cd "${PARAMMIX_HOME:-/opt/parammix}"
store="${PARAMMIX_STORE_URL:-s3://parammix/store}"
endpoint="${PARAMMIX_S3_ENDPOINT:-http://seaweedfs:8333}"

case "$store" in s3://*)
  STORE="$store" ENDPOINT="$endpoint" python - <<'PY'
import os
import time

import s3fs

bucket = os.environ["STORE"].removeprefix("s3://").split("/")[0]
fs = s3fs.S3FileSystem(endpoint_url=os.environ["ENDPOINT"])
for _ in range(60):  # the S3 gateway may still be starting
    try:
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        break
    except Exception as err:  # reported below if it never succeeds
        last = err
        time.sleep(1)
else:
    raise SystemExit(f"bucket {bucket} at {os.environ['ENDPOINT']}: {last}")
print(f"bucket {bucket} ready")
PY
esac

params=$(parammix show-config --config "${PARAMMIX_CONFIG:-configs/micro.yaml}" \
  --set "store.url=$store" --set "store.storage_options.endpoint_url=$endpoint" |
  python -c 'import json, sys, yaml; print(json.dumps({"exp": yaml.safe_load(sys.stdin)}))')
prefect --no-prompt work-pool create parammix-process --type process --overwrite
# `deploy --all` ignores --params, so each deployment is deployed by name.
for name in on-demand weekly-full-run nightly score refit; do
  prefect --no-prompt deploy --prefect-file deployments/prefect.yaml --name "$name" \
    --params "$params"
done
