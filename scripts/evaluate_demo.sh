#!/usr/bin/env bash
# Acceptance check of the demo weights on FRESH phantoms (a seed never used for training):
# 500 slices, alternating DICOM and PNG, with lesion masks; prints the classification report,
# ROC AUC, sensitivity at 95% specificity and the Grad-CAM pointing game.
# Bar: ROC AUC >= 0.97 and pointing game >= 0.85 of true-positive slices.
#
# Usage: scripts/evaluate_demo.sh [WORK_DIR] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d)}"
MODEL="${2:-hybrid_model/weights/demo.keras}"
DATA="$WORK/phantoms_eval"
HEMOSCAN=".venv/bin/hemoscan"
"$HEMOSCAN" phantoms --out "$DATA" --count 500 --seed 4242 --format mixed --size 256
"$HEMOSCAN" evaluate --data "$DATA" --model "$MODEL"
