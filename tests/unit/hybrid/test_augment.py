"""Grey exports of random windows drawn from three-window training slices (augment.py)."""

from __future__ import annotations

import numpy as np

from hybrid_model.augment import composite_hu, is_grey, windowed_grey
from hybrid_model.preprocess import hu_to_channels, window


def _three_window(hu: np.ndarray) -> np.ndarray:
    return np.round(hu_to_channels(hu) * 255).astype(np.uint8)


def _hu_field(seed: int, low: float = -150.0, high: float = 230.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, (64, 64)).astype(np.float32)


def test_composite_hu_uses_the_finest_unsaturated_window():
    hu = _hu_field(0)
    back = composite_hu(_three_window(hu)[None])[0]
    err = np.abs(back - hu)
    brain = (hu > 0.5) & (hu < 79.5)  # brain window 40/80: 0.31 HU per 8-bit step
    assert err[brain].max() <= 80 / 255 / 2 + 1e-3
    subdural = (hu > -19) & (hu < 179) & ~brain  # 80/200: 0.78 HU per step
    assert err[subdural].max() <= 200 / 255 / 2 + 1e-3
    assert err.max() <= 380 / 255 / 2 + 1e-3  # soft tissue 40/380 everywhere else


def test_composite_hu_clips_outside_the_widest_window():
    hu = np.array([[-1000.0, 1500.0]], np.float32)
    assert composite_hu(_three_window(hu)[None])[0].tolist() == [[-150.0, 230.0]]


def test_a_grey_export_matches_windowing_the_true_hu():
    hu = _hu_field(1, -60, 200)
    images = _three_window(hu)[None].repeat(8, axis=0)
    out = windowed_grey(images, np.random.default_rng(2), share=1.0)
    assert is_grey(out).all()
    # each image now holds one window of the same HU: find it from two grey levels and compare
    for grey in out[..., 0]:
        best = min(
            (np.abs(np.round(window(hu, lv, w) * 255) - grey).mean(), lv, w)
            for lv in range(20, 91, 1)
            for w in range(60, 381, 5)
        )
        assert best[0] < 3.0, best  # within a few grey levels of an exact export


def test_share_zero_and_grey_inputs_are_left_alone():
    rng = np.random.default_rng(3)
    images = _three_window(_hu_field(4))[None].repeat(4, axis=0)
    assert windowed_grey(images, rng, 0.0) is images
    grey = np.repeat(images[..., :1], 3, axis=-1)
    assert np.array_equal(windowed_grey(grey, rng, 1.0), grey)


def test_share_is_the_expected_fraction():
    images = _three_window(_hu_field(5))[None].repeat(400, axis=0)
    out = windowed_grey(images, np.random.default_rng(6), share=0.4)
    assert 0.32 < is_grey(out).mean() < 0.48
    assert np.array_equal(out[~is_grey(out)], images[~is_grey(out)])
