#!/usr/bin/env bash
# Reproduce the committed demo weights hybrid_model/weights/demo.keras (+ demo.metrics.json):
# 3000 synthetic head-CT phantoms (seed 20261127, alternating DICOM / 16-bit PNG, 256x256), then
# training with seed 0. About 30-45 minutes on 2 CPU cores. The weights are phantom-trained and
# NOT clinically valid; their metadata says so. CPU kernels are multi-threaded, so a rerun gives
# the same data and procedure but weights that can differ in the last digits.
#
# Usage: scripts/train_demo.sh [WORK_DIR]   (phantoms go to WORK_DIR/phantoms_train)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d)}"
DATA="$WORK/phantoms_train"
HEMOSCAN=".venv/bin/hemoscan"
"$HEMOSCAN" phantoms --out "$DATA" --count 3000 --seed 20261127 --format mixed --size 256
"$HEMOSCAN" train --data "$DATA" --out hybrid_model/weights/demo.keras \
    --epochs 16 --batch-size 32 --val-split 0.2 --seed 0 \
    --notes "3000 synthetic head-CT phantoms (hemoscan phantoms --count 3000 --seed 20261127 --format mixed --size 256)"
