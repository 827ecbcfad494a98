"""A grey export of an unknown window -> pseudo-HU, so it reaches the network as DICOM does.

An 8- or 16-bit PNG/JPEG of a head CT is one window (level and width unknown) of the HU image.
Fed to the network as the same grey in its three channels, it is a different input from the
three HU windows of a DICOM slice (``preprocess.WINDOWS``): on the same held-out phantom slices
the demo weights lose 0.04 to 0.18 ROC AUC that way (docs/experiments.md, "Grey exports").
Here the window is estimated from the image and undone:

* ``estimate_window``: quantiles of the unsaturated pixels (at 128 pixels), the spreads between
  them (in a wide window the brain's HU spread is a small share of the grey range), and the
  shares of saturated pixels, mapped to (level, log width) by a linear fit (``COEF``, fitted by
  ``fit`` on train-variant phantom slices exported in random windows; ``python -m
  hybrid_model.greywindow DATA`` refits it).
* ``grey_to_hu``: grey -> level - width/2 + grey x width; pixels saturated at the top (bone,
  and in a narrow window dense blood) become the window's top + 60 HU, and black ones air.
  Why not the top itself: bone would then read as blood-dense tissue in the wider windows; why
  not 1000 HU: in a narrow window (top near 60 HU) a saturated bleed would read as bone.

The HU the estimate gives are approximate (a slice's tissue mix moves the quantiles; on
held-out phantom slices the width is within a factor 0.55 to 1.3 for 80 % of them), the
network's three windows are robust to that much.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

WORK_SIDE = 128
QUANTILES = (5, 10, 25, 50, 75, 90, 95)
DARK, WHITE = 0.015, 0.985  # at or beyond: saturated (JPEG's ringing included)
TOP_MARGIN_HU = 60.0
AIR_HU = -1000.0
WIDTH_RANGE = (40.0, 3000.0)
LEVEL_RANGE = (-200.0, 800.0)
MIN_PIXELS = 50

# Rows: the features of ``features`` (7 quantiles, 3 log spreads, share saturated at the top,
# share black next to the body, 1); columns: level in HU, log width. ``fit`` on 892 DICOM
# slices of 24 train-variant series (``hemoscan phantoms --series 24 --seed 777``), 4 windows
# each (``augment.draw_window``), ridge 1e-3 (2026-12-03).
COEF = np.array(
    [
        [-83.6077, -9.52731],
        [-43.4389, -1.10441],
        [-26.6369, 0.231746],
        [-54.9265, -0.257999],
        [-1.58449, 0.948457],
        [26.8911, 0.0996262],
        [60.6484, 8.78223],
        [-24.0371, -5.35472],
        [-10.5969, -0.281358],
        [-12.0888, -0.835225],
        [5.86749, 0.548074],
        [-1.86496, 0.577358],
        [-7.93652, -5.50602],
    ]
)


def features(grey: np.ndarray) -> np.ndarray:
    """The estimator's inputs for one HxW grey image in [0, 1]."""
    small: np.ndarray = np.asarray(grey, np.float32)
    if max(small.shape) > WORK_SIDE:
        scale = WORK_SIDE / max(small.shape)
        size = (max(1, round(small.shape[1] * scale)), max(1, round(small.shape[0] * scale)))
        small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    body = small > DARK
    values = small[body & (small < WHITE)]
    q = np.percentile(values, QUANTILES) if values.size >= MIN_PIXELS else np.full(7, 0.5)
    n_body = max(1, int(body.sum()))
    white = float((small >= WHITE).sum()) / n_body
    near = cv2.dilate(body.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    black = float(((small <= DARK) & near).sum()) / n_body
    spreads = [np.log(max(float(q[-1 - i] - q[i]), 1e-3)) for i in range(3)]
    return np.concatenate([q, spreads, [white, black, 1.0]]).astype(np.float64)


def estimate_window(grey: np.ndarray, coef: np.ndarray | None = None) -> tuple[float, float]:
    """(level, width) in HU of the window that made ``grey`` (an estimate; see the module)."""
    c = COEF if coef is None else coef
    level, log_width = features(grey) @ c
    return (
        float(np.clip(level, *LEVEL_RANGE)),
        float(np.clip(np.exp(log_width), *WIDTH_RANGE)),
    )


def grey_to_hu(grey: np.ndarray, level: float, width: float) -> np.ndarray:
    """Pseudo-HU of a grey image exported in the window (``level``, ``width``)."""
    g = np.asarray(grey, np.float32)
    hu = np.float32(level - width / 2.0) + g * np.float32(width)
    hu[g >= WHITE] = level + width / 2.0 + TOP_MARGIN_HU
    hu[g <= DARK] = AIR_HU
    return hu


def pseudo_hu(grey: np.ndarray) -> np.ndarray:
    """``grey_to_hu`` at the estimated window."""
    return grey_to_hu(grey, *estimate_window(grey))


def export(hu: np.ndarray, level: float, width: float, levels: int = 255) -> np.ndarray:
    """The grey export of ``hu`` in a window, quantised to ``levels`` steps (8-bit: 255)."""
    from hybrid_model.preprocess import window  # preprocess imports this module

    return (np.round(window(hu, level, width) * levels) / levels).astype(np.float32)


def fit(
    hu_slices: Iterable[np.ndarray],
    rng: np.random.Generator,
    *,
    windows_per_slice: int = 4,
    ridge: float = 1e-3,
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit ``COEF`` from HU slices exported in random windows (``augment.draw_window``); the
    coefficients and the in-sample errors (level error s.d., width ratio deciles)."""
    from hybrid_model.augment import draw_window

    rows, targets = [], []
    for hu in hu_slices:
        for _ in range(windows_per_slice):
            level, width = draw_window(rng)
            rows.append(features(export(hu, level, width)))
            targets.append((level, np.log(width)))
    x, y = np.asarray(rows), np.asarray(targets)
    coef = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
    pred = x @ coef
    ratio = np.exp(pred[:, 1] - y[:, 1])
    errors = {
        "samples": float(len(x)),
        "level_error_sd_hu": float((pred[:, 0] - y[:, 0]).std()),
        "width_ratio_p10": float(np.percentile(ratio, 10)),
        "width_ratio_p90": float(np.percentile(ratio, 90)),
    }
    return coef, errors


def _dicom_hu(folder: Path) -> Iterable[np.ndarray]:
    from hybrid_model.dicom import decode_dicom

    for path in sorted(folder.rglob("*.dcm")):
        yield decode_dicom(path.read_bytes(), path.name, max_pixels=10**8).hu


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m hybrid_model.greywindow",
        description="Refit the grey-export window estimator (COEF) on the DICOM slices of a "
        "phantom folder (train variant only: the held-out variant is for evaluation) and print "
        "the coefficients to paste into hybrid_model/greywindow.py.",
    )
    p.add_argument("data", type=Path, help="folder of DICOM slices (e.g. hemoscan phantoms)")
    p.add_argument("--seed", type=int, default=0, help="random windows' seed (default: 0)")
    args = p.parse_args(argv)
    coef, errors = fit(_dicom_hu(args.data), np.random.default_rng(args.seed))
    print({k: round(v, 4) for k, v in errors.items()})
    print("COEF = np.array(")
    print("    [")
    for row in coef:
        print(f"        [{row[0]:.6g}, {row[1]:.6g}],")
    print("    ]")
    print(")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["COEF", "estimate_window", "export", "features", "fit", "grey_to_hu", "pseudo_hu"]
