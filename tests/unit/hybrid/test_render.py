"""Overlay PNG, raw map bytes (one image, a pack) and peak coordinates back in native pixels."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from hybrid_model.preprocess import resize_to_model
from hybrid_model.render import maps_npz, overlay_png, peak, raw_map_npy, read_map


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


def test_a_pack_gives_each_image_its_own_map_and_the_input_size():
    maps = np.random.default_rng(1).random((5, 16, 16)).astype(np.float32)
    data = maps_npz(maps, (64, 64))
    for i in range(5):
        cam, size, frame = read_map(data, i)
        assert size == (64, 64) and cam.dtype == np.float32 and frame is None
        np.testing.assert_allclose(cam, maps[i], atol=1e-3)
    # A reader needs nothing of ours: the pack is a plain .npz of float16 maps.
    with np.load(io.BytesIO(data)) as loaded:
        assert loaded["maps"].dtype == np.float16 and loaded["maps"].shape == (5, 16, 16)


def test_a_one_image_map_still_reads_at_its_own_size():
    """Rows written before packs point at one image's .npy, at the model input's size."""
    cam = np.random.default_rng(2).random((32, 32)).astype(np.float32)
    back, size, _ = read_map(raw_map_npy(cam), None)
    assert size == (32, 32)
    np.testing.assert_allclose(back, cam, atol=1e-3)


@pytest.mark.parametrize(
    ("data", "index", "says"),
    [
        (b"PK\x03\x04 not really a zip", 0, "not a stored map"),
        (b"garbage", None, "not a stored map"),
        (maps_npz(np.zeros((2, 4, 4)), (16, 16)), 2, "holds no map 2"),
        (maps_npz(np.zeros((2, 4, 4)), (16, 16)), None, "not a one-image map"),
        (raw_map_npy(np.zeros((4, 4))), 0, "not a pack"),
    ],
)
def test_bytes_that_are_no_such_map_are_a_value_error(data, index, says):
    with pytest.raises(ValueError, match=says):
        read_map(data, index)


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
