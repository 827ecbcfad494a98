#!/usr/bin/env bash
# Series screening on FRESH held-out series: 100 series of the heldout generator variant
# (seed 4244, never used for training), series ROC AUC and slice ROC AUC of max-of-slices (the
# slice network alone) next to the series stage (a GRU over the slices in z order), and the
# series stage's sensitivity and specificity at its stored threshold. About 10 minutes on 2
# cores (most of it drawing the phantoms).
#
# Usage: scripts/evaluate_series_demo.sh [WORK_DIR] [SERIES_MODEL] [SLICE_MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d)}"
SERIES="${2:-hybrid_model/weights/demo_series.keras}"
SLICE="${3:-hybrid_model/weights/demo.keras}"
HEMOSCAN=".venv/bin/hemoscan"
"$HEMOSCAN" phantoms --out "$WORK/series_heldout_4244" --series 100 --seed 4244 --variant heldout --format mixed
"$HEMOSCAN" evaluate-series --data "$WORK/series_heldout_4244" --series-model "$SERIES" --model "$SLICE" \
    --json-out "$WORK/series_heldout_4244.json"
