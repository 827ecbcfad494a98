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
# From Debian, for the tests: dicom3tools' dciodvfy checks every DICOM object hemoscan writes.
# Installed when missing and this is root with apt; otherwise a note (the rest works without).
if ! command -v dciodvfy >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing dicom3tools (apt) for dciodvfy" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends dicom3tools >/dev/null 2>&1 || {
      apt-get update -q >/dev/null 2>&1 || true
      apt-get install -y -q --no-install-recommends dicom3tools >/dev/null
    }
  else
    echo "setup: dciodvfy not found; the DICOM output tests need it (apt install dicom3tools)" >&2
  fi
fi
echo "setup: done ($(.venv/bin/hemoscan --version))" >&2
