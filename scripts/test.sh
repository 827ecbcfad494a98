#!/usr/bin/env bash
# Set everything up and run the whole test suite against real services.
#   scripts/test.sh                 all tests (unit, integration, faults)
#   scripts/test.sh tests/unit -x   any pytest arguments
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
eval "$(scripts/services.sh start)"
# pytest exits 5 when it collected no tests: that is a failure here, never a green run.
# --durations=15: the slowest tests are listed after every run, so a slow one is seen.
exec .venv/bin/python -m pytest --durations=15 "${@:-tests}"
