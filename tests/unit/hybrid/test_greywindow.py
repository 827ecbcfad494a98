"""Grey exports of an unknown window read back as pseudo-HU (hybrid_model/greywindow.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hybrid_model.greywindow import (
    AIR_HU,
    DARK,
    TOP_MARGIN_HU,
    WHITE,
    estimate_window,
    export,
    grey_to_hu,
)
from hybrid_model.preprocess import decode_image, hu_to_channels
from hybrid_model.synth.config import VARIANTS
from hybrid_model.synth.volume import make_series
from hybrid_model.synth.write import series_rng

# Windows of public exports: brain, a wider brain, subdural, a wide soft-tissue one.
WINDOWS = ((40.0, 80.0), (35.0, 100.0), (80.0, 200.0), (60.0, 300.0))


@pytest.fixture(scope="module")
def heldout_slices() -> list[np.ndarray]:
    """HU slices of two held-out-variant series (the estimator was fitted on the train
    variant), through the middle and top of the head where the brain fills the slice."""
    out = []
    for i in range(2):
        series = make_series(series_rng(31, i), VARIANTS["heldout"], 256)
        n = len(series.slices)
        out += [s.hu for s in series.slices[n // 3 : n - 2 : 3]]
    return out


def test_inside_the_window_the_hu_come_back_to_quantisation():
    hu = np.linspace(-20.0, 100.0, 2001, dtype=np.float32).reshape(1, -1)
    level, width = 40.0, 80.0
    back = grey_to_hu(export(hu, level, width), level, width)
    # the outer 1.5 % of the grey range counts as saturated (DARK, WHITE): 1.2 HU at each end
    inside = (hu > level - width / 2 + DARK * width + 0.5) & (
        hu < level - width / 2 + WHITE * width - 0.5
    )
    assert np.abs(back - hu)[inside].max() <= width / 255 / 2 + 1e-3


def test_saturated_pixels_become_air_and_above_the_window():
    grey = np.array([[0.0, 0.5, 1.0]], np.float32)
    hu = grey_to_hu(grey, 40.0, 80.0)
    assert hu.tolist() == [[AIR_HU, 40.0, 80.0 + TOP_MARGIN_HU]]


@pytest.mark.parametrize(("level", "width"), WINDOWS)
def test_the_window_is_estimated_on_slices_it_was_not_fitted_on(heldout_slices, level, width):
    estimates = np.array([estimate_window(export(hu, level, width)) for hu in heldout_slices])
    ratio = np.median(estimates[:, 1]) / width
    assert 0.6 < ratio < 1.6, (estimates, ratio)
    assert abs(np.median(estimates[:, 0]) - level) < 20.0, estimates


def _png(grey: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.round(grey * 255).astype(np.uint8))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(("level", "width"), WINDOWS)
def test_a_decoded_export_is_close_to_the_dicom_windows(heldout_slices, level, width):
    """Inside the head (tissue 0..100 HU) the three channels of a decoded 8-bit export are
    much closer to the DICOM slice's channels than the grey repeated in three channels."""
    errors, grey_errors = [], []
    for hu in heldout_slices:
        grey = export(hu, level, width)
        decoded = decode_image(_png(grey), "x.png", size=None).pixels
        truth = hu_to_channels(hu)
        tissue = (hu > 0) & (hu < 100)
        errors.append(np.abs(decoded - truth)[tissue].mean())
        grey_errors.append(np.abs(grey[..., None] - truth)[tissue].mean())
    assert np.median(errors) < 0.1
    assert np.median(errors) < 0.6 * np.median(grey_errors), (errors, grey_errors)
