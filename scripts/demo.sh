#!/usr/bin/env bash
# Set everything up and run the main job on the embedded defaults (no services needed).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
exec .venv/bin/hemoscan demo "$@"
