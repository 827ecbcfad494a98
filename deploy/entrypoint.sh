#!/bin/sh
# Container entry point for both images: optionally fetch the model, then run the command.
#
# The model is normally mounted read-only at $HEMOSCAN_MODEL_PATH. Alternatively set
# MODEL_URI=s3://bucket/path/model.keras: it is downloaded there at start (with the
# object-store settings, HEMOSCAN_S3_ENDPOINT_URL and the rest) unless the file is already
# there. Nothing secret is in the image.
set -eu

if [ -n "${MODEL_URI:-}" ] && [ ! -s "${HEMOSCAN_MODEL_PATH:?HEMOSCAN_MODEL_PATH must be set}" ]; then
  python - "$MODEL_URI" "$HEMOSCAN_MODEL_PATH" <<'PY'
import os
import sys
from pathlib import Path

from hemoscan.settings import get_settings
from hemoscan.storage import open_store

uri, target = sys.argv[1], Path(sys.argv[2])
location, _, name = uri.rpartition("/")
data = open_store(location, get_settings()).get(name)
target.parent.mkdir(parents=True, exist_ok=True)
partial = target.with_suffix(".partial")
partial.write_bytes(data)
os.replace(partial, target)  # never leave a half-written model for the worker's preflight
print(f"entrypoint: fetched the model ({len(data)} bytes) to {target}", file=sys.stderr)
PY
fi

exec "$@"
