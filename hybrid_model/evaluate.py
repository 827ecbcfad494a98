"""Evaluate a model on any labelled folder (``hemoscan evaluate``).

Reports the classification metrics at the model's stored threshold (plus sensitivity at 95%
specificity on this data), and, when ``masks/`` exists, the Grad-CAM pointing game: the
fraction of true-positive slices whose Grad-CAM peak, mapped back to native pixel coordinates,
falls inside the lesion mask dilated by ``POINTING_TOLERANCE_PX`` (2 pixels) of tolerance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

POINTING_TOLERANCE_PX = 2


def pointing_hit(
    mask: np.ndarray | None,
    point: tuple[int, int] | None,
    tolerance: int = POINTING_TOLERANCE_PX,
) -> bool:
    """Whether ``point`` lies in ``mask`` dilated by ``tolerance`` pixels; an all-zero map (no
    point) or an unreadable mask is a miss."""
    if mask is None or point is None:
        return False
    if tolerance > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1,) * 2)
        mask = cv2.dilate(mask, kernel)
    row, col = point
    return bool(0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and mask[row, col] > 0)


def evaluate(
    data_dir: str | Path,
    model_path: str | Path | None = None,
    *,
    batch_size: int = 32,
    tolerance_px: int = POINTING_TOLERANCE_PX,
    show: bool = True,
) -> dict[str, Any]:
    """Score every labelled image; return (and print) metrics and the pointing game."""
    from hybrid_model.data import load_labelled
    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import DEMO_MODEL_PATH, load_model
    from hybrid_model.metrics import classification_metrics, render_metrics
    from hybrid_model.render import peak

    loaded = load_model(model_path or DEMO_MODEL_PATH)
    data = load_labelled(data_dir, loaded.input_size)
    cam = GradCam(loaded.model, model_batch=batch_size)
    threshold = loaded.threshold
    probs = np.zeros(len(data.labels), np.float32)
    hits = slices = 0
    for start in range(0, len(data.labels), batch_size):
        idx = np.arange(start, min(start + batch_size, len(data.labels)))
        batch_probs, maps = cam(data.floats(idx))
        probs[idx] = batch_probs
        for j, i in enumerate(idx):
            mask_path = data.masks.get(data.ids[i])
            if data.labels[i] == 1 and batch_probs[j] >= threshold and mask_path is not None:
                slices += 1
                mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                hits += pointing_hit(mask, peak(maps[j], data.native_shapes[i]), tolerance_px)
    metrics = classification_metrics(data.labels, probs, threshold=threshold)
    metrics["model"] = {k: loaded.metadata.get(k) for k in ("version", "phantom_trained")}
    metrics["model"]["path"] = loaded.path
    metrics["skipped"] = data.skipped
    if data.masks:
        metrics["pointing_game"] = {
            "hits": int(hits),
            "slices": int(slices),
            "hit_rate": hits / slices if slices else float("nan"),
            "tolerance_px": tolerance_px,
        }
    if show:
        render_metrics(metrics, title=f"evaluation of {Path(data_dir).name} ({len(probs)} images)")
        print(loaded.note)
    return metrics
