"""Grey exports of random windows drawn from three-window training slices (augment.py)."""

from __future__ import annotations

import cv2
import numpy as np

from hybrid_model.augment import composite_hu, draw_window, windowed_grey
from hybrid_model.greywindow import export
from hybrid_model.preprocess import DecodeOptions, decode_image, hu_to_channels

NO_GATE = DecodeOptions(head_gate=False)  # a noise field is no head


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


def _png(grey: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.round(grey * 255).astype(np.uint8))
    assert ok
    return buf.tobytes()


def test_a_drawn_export_is_what_decoding_the_same_export_gives():
    """Training meets a grey export exactly as a worker decodes the PNG of that window."""
    hu = _hu_field(1, -60, 200)
    images = _three_window(hu)[None].repeat(6, axis=0)
    out = windowed_grey(images, np.random.default_rng(2), share=1.0)
    replay = np.random.default_rng(2)
    replay.random(len(images))  # the draw of which images to replace
    truth = composite_hu(images[:1])[0]
    for image in out:
        grey = export(truth, *draw_window(replay))
        decoded = decode_image(_png(grey), "x.png", size=None, options=NO_GATE).pixels
        assert np.abs(image.astype(np.float32) - np.round(decoded * 255)).max() <= 1


def test_share_zero_leaves_the_batch_alone():
    images = _three_window(_hu_field(4))[None].repeat(4, axis=0)
    assert windowed_grey(images, np.random.default_rng(3), 0.0) is images


def test_share_is_the_expected_fraction():
    images = _three_window(_hu_field(5))[None].repeat(400, axis=0)
    out = windowed_grey(images, np.random.default_rng(6), share=0.4)
    changed = np.any(out != images, axis=(1, 2, 3))
    assert 0.32 < changed.mean() < 0.48
