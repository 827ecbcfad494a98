"""Training augmentation that turns a three-window CT input into a windowed grey export.

A DICOM slice reaches the network as three HU windows (``preprocess.WINDOWS``); an 8- or 16-bit
PNG of an unknown window reaches it as the three windows of its pseudo-HU (the window estimated
and undone, ``greywindow``). The phantoms' mixed exports hold some of the latter, but one window
per series; ``windowed_grey`` redraws a share of the training slices, per batch, as grey
exports of a random window read back as decoding reads them, so the network meets both forms of
the same anatomy and lesion (docs/experiments.md, "Stage 6" and "Grey exports").

The HU of a pixel is recovered from the narrowest window that does not saturate there (brain:
0.3 HU per 8-bit step; subdural: 0.8; soft tissue: 1.5), so a narrow random window is not a
posterised copy of the wide one. Values outside the soft-tissue window (below -150 HU, above
230 HU) stay clipped there: a window reaching beyond them (a bone window) is not drawn.
"""

from __future__ import annotations

import numpy as np

from hybrid_model.greywindow import export, pseudo_hu
from hybrid_model.preprocess import WINDOWS, hu_to_channels

# Windows of the exports drawn (level, width ranges in HU): mostly brain-like, some wide ones,
# a little wider than the phantoms' own PNG exports (synth/write.py, png_export).
NARROW = ((20.0, 60.0), (60.0, 160.0))
WIDE = ((30.0, 90.0), (150.0, 380.0))
WIDE_SHARE = 0.25


def composite_hu(images: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 three-window images -> N x H x W float32 HU (see the module
    docstring); values outside the widest window come back at its edge."""
    x = images.astype(np.float32) / 255.0
    out = np.empty(x.shape[:-1], np.float32)
    done = np.zeros(x.shape[:-1], bool)
    # Narrowest window first: it has the finest HU step where it is not saturated.
    for c in sorted(range(len(WINDOWS)), key=lambda i: WINDOWS[i][2]):
        _, level, width = WINDOWS[c]
        hu = x[..., c] * width + (level - width / 2.0)
        inside = ~done & (images[..., c] > 0) & (images[..., c] < 255)
        out[inside] = hu[inside]
        done |= inside
    widest = max(range(len(WINDOWS)), key=lambda i: WINDOWS[i][2])
    _, level, width = WINDOWS[widest]
    out[~done] = (x[..., widest] * width + (level - width / 2.0))[~done]
    return out


def draw_window(rng: np.random.Generator) -> tuple[float, float]:
    (lo_l, hi_l), (lo_w, hi_w) = WIDE if rng.random() < WIDE_SHARE else NARROW
    return float(rng.uniform(lo_l, hi_l)), float(rng.uniform(lo_w, hi_w))


def windowed_grey(images: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """A copy of the uint8 batch ``images`` (N x H x W x 3) in which each image, with
    probability ``share``, is replaced by an 8-bit grey export of a random window as decoding
    reads one back (``greywindow.pseudo_hu``, then the three windows). The others are kept."""
    if share <= 0:
        return images
    pick = np.flatnonzero(rng.random(len(images)) < share)
    if not len(pick):
        return images
    out = images.copy()
    hu = composite_hu(images[pick])
    for j, i in enumerate(pick):
        grey = export(hu[j], *draw_window(rng))
        out[i] = np.round(hu_to_channels(pseudo_hu(grey)) * 255.0).astype(np.uint8)
    return out


__all__ = ["composite_hu", "draw_window", "windowed_grey"]
