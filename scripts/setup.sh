#!/usr/bin/env bash
# Create .venv in the repository root (if missing) and install hemoscan with its dev extra.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "setup: hemoscan needs Python >= 3.11 (set PYTHON=python3.11)" >&2; exit 1
fi
echo "setup: installing hemoscan and its dependencies into .venv (first time: a few minutes)" >&2
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "setup: done ($(.venv/bin/hemoscan --version))" >&2
