#!/usr/bin/env bash
# Reproduce the committed demo weights hybrid_model/weights/demo.keras (+ demo.metrics.json).
# Two stages on synthetic head-CT phantoms (256x256, alternating DICOM / 16-bit PNG):
#   1. 3000 phantoms (seed 20261127), network with last_conv at 32x32 (--pooled-blocks 3),
#      up to 16 epochs, seed 0: learns to detect bleeds;
#   2. 3000 fresh phantoms (seed 20261128), the default network with last_conv at 64x64
#      (pooling layers carry no weights, so every weight is copied from stage 1), 3 epochs at a
#      lower learning rate, seed 1: sharper Grad-CAM maps for thin bleeds.
# About an hour on 2 CPU cores. (For the committed file, stage 1 was stopped after epoch 14 of
# 16 to save time; its best epoch, 12, is what early stopping keeps, as a full run would unless
# epochs 15-16 beat it.) The weights are phantom-trained and NOT clinically valid; their
# metadata says so. CPU kernels are multi-threaded, so a rerun follows the same data and
# procedure but its weights can differ in the last digits.
#
# Tried and NOT adopted (2026-11-27): a third stage with training-only lesion-mask supervision of
# last_conv (hemoscan train --init STAGE2 --mask-weight W --outside-weight V, on
# 3000 phantoms seed 20261129). The mask head learned the lesions, but the classifier's Grad-CAM
# pointing game fell (acceptance set: 0.30 vs 0.54 before, AUC 0.9987 vs 0.9756), so the
# committed weights are still the two stages below. See hybrid_model/train.py.
#
# Usage: scripts/train_demo.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d)}"
HEMOSCAN=".venv/bin/hemoscan"
"$HEMOSCAN" phantoms --out "$WORK/phantoms_train" --count 3000 --seed 20261127 --format mixed --size 256
"$HEMOSCAN" phantoms --out "$WORK/phantoms_train2" --count 3000 --seed 20261128 --format mixed --size 256
"$HEMOSCAN" train --data "$WORK/phantoms_train" --out "$WORK/stage1.keras" \
    --pooled-blocks 3 --epochs 16 --batch-size 32 --val-split 0.2 --seed 0 \
    --notes "stage 1: 3000 phantoms (seed 20261127), last_conv 32x32"
"$HEMOSCAN" train --data "$WORK/phantoms_train2" --out hybrid_model/weights/demo.keras \
    --init "$WORK/stage1.keras" --epochs 3 --learning-rate 0.0005 --patience 3 \
    --batch-size 32 --val-split 0.2 --seed 1 \
    --notes "synthetic head-CT phantoms: stage 1 on 3000 (hemoscan phantoms --seed 20261127 --format mixed), stage 2 on 3000 (seed 20261128); see scripts/train_demo.sh"
