"""Overlay PNG, raw map bytes and peak coordinates back in native pixels."""

from __future__ import annotations

import io

import cv2
import numpy as np

from hybrid_model.preprocess import resize_to_model
from hybrid_model.render import overlay_png, peak, raw_map_npy


def test_overlay_is_a_colour_png_of_the_image_size():
    image = np.zeros((40, 40, 3), np.float32)
    cam = np.zeros((40, 40), np.float32)
    cam[10, 30] = 1.0
    png = overlay_png(image, cam)
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (40, 40, 3)
    assert decoded[10, 30, 2] > decoded[0, 0, 2]  # JET: hot is red


def test_raw_map_roundtrip_float16():
    cam = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    back = np.load(io.BytesIO(raw_map_npy(cam)))
    assert back.dtype == np.float16
    np.testing.assert_allclose(back, cam, atol=1e-3)


def test_peak_identity_when_native_is_model_size():
    cam = np.zeros((32, 32), np.float32)
    cam[5, 20] = 1
    assert peak(cam, (32, 32)) == (5, 20)


def test_peak_undoes_letterbox_and_resize():
    native = np.zeros((100, 200), np.float32)
    native[70:74, 150:154] = 1.0  # a blob at rows 70-73, cols 150-153
    cam = resize_to_model(native[..., None], 50)[..., 0]
    row, col = peak(cam, native.shape)
    assert 68 <= row <= 75 and 148 <= col <= 155


def test_peak_is_clipped_inside_the_image():
    cam = np.zeros((10, 10), np.float32)
    cam[0, 0] = 1  # in the padding band of a wide image
    assert peak(cam, (20, 100)) == (0, 4)  # row -35.5 clipped to 0; col 4.5 rounds to 4


def test_all_zero_map_has_no_peak():
    assert peak(np.zeros((10, 10), np.float32), (10, 10)) is None
    cam = np.zeros((10, 10), np.float32)
    cam[9, 9] = 1e-6  # any positive evidence is a peak
    assert peak(cam, (10, 10)) == (9, 9)
