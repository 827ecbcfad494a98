"""16-bit PNG: windowed export, HU + 1024 export, and the ``auto`` rule between them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hybrid_model.greywindow import pseudo_hu
from hybrid_model.phantoms import generate, make_slice
from hybrid_model.preprocess import DecodeOptions, decode_image, decode_native, hu_to_channels
from hybrid_model.raster import decode_raster, looks_like_hu1024


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _decode(data: bytes, png16: str = "auto", head_gate: bool = True):
    """Phantoms are heads and keep the out-of-scope gate; an image read near-black (12-bit
    values taken as windowed) or a few uniform pixels is not one: those pass head_gate False."""
    options = DecodeOptions(png16=png16, head_gate=head_gate)
    return decode_image(data, "a.png", size=None, options=options)


@pytest.fixture(scope="module")
def phantom_hu() -> list[np.ndarray]:
    rng = np.random.default_rng(21)
    return [make_slice(rng, 96, hemorrhage=i % 2 == 0)[0] for i in range(4)]


def test_hemoscan_phantom_pngs_stay_windowed_under_auto(tmp_path):
    """`hemoscan phantoms` writes the brain window scaled to 0..65535."""
    records = generate(tmp_path, 6, seed=5, fmt="png", size=64)
    for rec in records:
        data = Path(rec["file"]).read_bytes()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint16 and not looks_like_hu1024(img)
        auto = _decode(data)
        assert auto.flags == ()
        np.testing.assert_array_equal(auto.pixels, _decode(data, "windowed").pixels)
        # read as the window's grey, whose window is then estimated and undone
        grey = img.astype(np.float32) / 65535.0
        np.testing.assert_allclose(auto.pixels, hu_to_channels(pseudo_hu(grey)), atol=1e-6)


def test_hu1024_export_is_detected_and_windowed_like_dicom(phantom_hu):
    for hu in phantom_hu:
        stored = np.clip(np.round(hu) + 1024, 0, 4095).astype(np.uint16)
        out = _decode(_png(stored))
        assert out.flags == ("png16_hu1024",)
        expected = hu_to_channels(stored.astype(np.float32) - 1024)
        np.testing.assert_allclose(out.pixels, expected, atol=1e-6)
        assert out.pixels[..., 0].mean() > 0.05  # not the near-black of a /65535 reading


def test_explicit_modes_override_auto(phantom_hu):
    stored = (np.round(phantom_hu[0]) + 1024).astype(np.uint16)
    data = _png(stored)
    windowed = _decode(data, "windowed", head_gate=False)
    assert windowed.flags == () and windowed.pixels.max() <= 4095 / 65535 + 1e-6
    assert _decode(data, "hu1024").flags == ("png16_hu1024",)
    # decode_native (old callers) uses the default, auto.
    np.testing.assert_array_equal(decode_native(data, "a.png"), _decode(data).pixels)


def test_near_black_image_is_windowed():
    img = np.zeros((32, 32), np.uint16)
    img[10:20, 10:20] = 300
    assert _decode(_png(img), head_gate=False).flags == ()


def test_12_bit_windowed_export_that_saturates_is_windowed(phantom_hu):
    """Brain window squeezed into 0..4095: bone clips at 4095 (a plateau), so not HU."""
    hu = phantom_hu[1]
    windowed = (np.clip((hu - 0) / 80, 0, 1) * 4095).round().astype(np.uint16)
    assert not looks_like_hu1024(windowed)
    assert _decode(_png(windowed), head_gate=False).flags == ()


def test_auto_needs_soft_tissue():
    air_and_bone = np.where(np.arange(64 * 64).reshape(64, 64) % 2 == 0, 24, 2500)
    assert not looks_like_hu1024(air_and_bone.astype(np.uint16))


def test_colour_16_bit_png_is_never_auto_hu(phantom_hu):
    stored = (np.round(phantom_hu[0]) + 1024).astype(np.uint16)
    colour = np.repeat(stored[:, :, None], 3, axis=2)
    assert _decode(_png(colour), head_gate=False).flags == ()
    assert _decode(_png(colour), "hu1024").flags == ("png16_hu1024",)


def test_8_bit_png_and_jpeg_stay_windowed():
    img = np.full((16, 16), 100, np.uint8)
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, img)
        for mode in ("auto", "hu1024"):
            raster = decode_raster(buf.tobytes(), f"a{ext}", max_pixels=10**6, png16=mode)
            assert raster.flags == () and raster.hu is None
            np.testing.assert_allclose(raster.grey, 100 / 255, atol=0.02)


def test_invalid_png16_option():
    with pytest.raises(ValueError, match="png16 must be one of auto, windowed, hu1024"):
        DecodeOptions(png16="hu")
