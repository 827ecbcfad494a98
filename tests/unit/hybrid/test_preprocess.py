"""Decoding and windowing: hand-made HU arrays and DICOM/PNG/JPEG files made here."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest

from hybrid_model import errors
from hybrid_model.preprocess import (
    WINDOWS,
    decode,
    decode_native,
    hu_to_channels,
    resize_to_model,
    window,
)
from hybrid_model.raster import decode_raster
from tests.utils.gdcm_encode import gdcm_encode

from .conftest import dicom_bytes, make_dicom


def test_brain_window_landmarks():
    hu = np.array([-100, 0, 20, 40, 60, 80, 500], dtype=np.float32)
    np.testing.assert_allclose(window(hu, 40, 80), [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-6)


def test_window_returns_float32_in_unit_range():
    out = window(np.array([[-5000, 5000]]), 80, 200)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0


@pytest.mark.parametrize("width", [0, -10])
def test_window_rejects_non_positive_width(width):
    with pytest.raises(ValueError, match="width"):
        window(np.zeros(3), 40, width)


def test_hu_to_channels_stacks_the_three_windows(hu_ramp):
    channels = hu_to_channels(hu_ramp)
    assert channels.shape == (*hu_ramp.shape, 3) and channels.dtype == np.float32
    for i, (_, level, width) in enumerate(WINDOWS):
        np.testing.assert_array_equal(channels[..., i], window(hu_ramp, level, width))
    assert channels[0, 1, 0] == pytest.approx(0.5)  # HU 40 in the brain window


def test_hu_to_channels_matches_window_bit_for_bit_on_any_input():
    # The scratch-plane path must give what window() gives: random float HU (a strided view)
    # and integer HU as a decoder may hand them over.
    rng = np.random.default_rng(3)
    floats = rng.normal(40, 400, (64, 96)).astype(np.float32)[:, ::2]
    ints = rng.integers(-1024, 3000, (40, 40)).astype(np.int16)
    for hu in (floats, ints):
        channels = hu_to_channels(hu)
        for i, (_, level, width) in enumerate(WINDOWS):
            np.testing.assert_array_equal(channels[..., i], window(hu, level, width))


def test_uncompressed_dicom_rescale_to_hu(hu_ramp):
    data = dicom_bytes(make_dicom(hu_ramp))
    np.testing.assert_allclose(
        decode_native(data, "a.dcm", head_gate=False), hu_to_channels(hu_ramp), atol=1e-6
    )


def test_slope_and_intercept_are_applied(hu_ramp):
    ds = make_dicom(hu_ramp, slope=2.0, intercept=-1000.0)
    hu = (np.round((hu_ramp + 1000) / 2) * 2 - 1000).astype(np.float32)
    np.testing.assert_allclose(
        decode_native(dicom_bytes(ds), "x", head_gate=False), hu_to_channels(hu), atol=1e-6
    )


def test_missing_rescale_defaults_to_identity():
    stored = np.array([[0, 40], [80, 20]], dtype=np.float32)
    ds = make_dicom(stored, intercept=0.0)
    del ds.RescaleSlope, ds.RescaleIntercept
    np.testing.assert_allclose(
        decode_native(dicom_bytes(ds), "x.dcm", head_gate=False)[..., 0], [[0, 0.5], [1, 0.25]]
    )


def test_monochrome1_is_inverted_before_rescale(hu_ramp):
    hu = np.clip(hu_ramp, -1024, 3071)
    stored = 4095 - (hu + 1024)  # MONOCHROME1: high stored values are dark
    ds = make_dicom(hu, signed=False, bits_stored=12, photometric="MONOCHROME1", stored=stored)
    np.testing.assert_allclose(
        decode_native(dicom_bytes(ds), "m1.dcm", head_gate=False), hu_to_channels(hu), atol=1e-6
    )


def test_dicom_detected_by_preamble_without_suffix(hu_ramp):
    assert decode_native(
        dicom_bytes(make_dicom(hu_ramp)), "object-key-without-suffix", head_gate=False
    ).shape == (
        32,
        48,
        3,
    )


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless"])
def test_compressed_dicom_pydicom_encoders(hu_ramp, syntax):
    import pydicom.uid

    ds = make_dicom(hu_ramp)
    ds.compress(getattr(pydicom.uid, syntax))
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    np.testing.assert_allclose(
        decode_native(dicom_bytes(ds), "c.dcm", head_gate=False), hu_to_channels(hu_ramp), atol=1e-6
    )


def test_jpeg_lossless_process14_dicom(tmp_path, hu_ramp):
    """JPEG Lossless SV1 (1.2.840.10008.1.2.4.70) encoded by GDCM (test-only dependency)."""
    import pydicom

    data = gdcm_encode(dicom_bytes(make_dicom(hu_ramp)), tmp_path)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    # The production decoder is pylibjpeg (libjpeg plugin), not GDCM.
    raw = pydicom.pixels.pixel_array(ds, decoding_plugin="pylibjpeg")
    np.testing.assert_array_equal(raw, (hu_ramp + 1024).astype(np.int16))
    np.testing.assert_allclose(
        decode_native(data, "ll.dcm", head_gate=False), hu_to_channels(hu_ramp), atol=1e-6
    )


def test_16bit_png_scaled_by_dtype_max():
    img = np.array([[0, 65535], [32768, 0]], dtype=np.uint16)
    ok, buf = cv2.imencode(".png", img)
    assert decode_native(buf.tobytes(), "a.png", head_gate=False).shape == (2, 2, 3)
    grey = decode_raster(buf.tobytes(), "a.png", max_pixels=100).grey
    np.testing.assert_allclose(grey, img / 65535.0, atol=1e-6)


def test_rgb_jpeg_becomes_grey():
    img = np.zeros((16, 24, 3), np.uint8)
    img[:, :12] = (0, 0, 255)  # BGR red
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert decode_native(buf.tobytes(), "photo.jpg", head_gate=False).shape == (16, 24, 3)
    grey = decode_raster(buf.tobytes(), "photo.jpg", max_pixels=1000).grey
    assert grey.shape == (16, 24)
    assert 0.2 < grey[8, 2] < 0.4 and grey[8, 20] < 0.05  # luma of pure red is ~0.3


def test_alpha_channel_is_dropped():
    bgra = np.full((4, 4, 4), 200, np.uint8)
    bgra[..., 3] = 0
    ok, buf = cv2.imencode(".png", bgra)
    assert decode_native(buf.tobytes(), "a.png", head_gate=False).shape == (4, 4, 3)
    grey = decode_raster(buf.tobytes(), "a.png", max_pixels=100).grey
    np.testing.assert_allclose(grey, 200 / 255, atol=1e-6)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def _raises(exc_type, data, name, **kwargs):
    with pytest.raises(exc_type) as info:
        decode_native(data, name, **kwargs)
    assert info.value.reason == exc_type.reason and str(info.value)
    return info.value


def test_png_header_over_pixel_limit_rejected_before_decoding(monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded pixels"))
    _raises(errors.ImageTooLarge, _png_header(100_000, 100_000) + b"\0" * 64, "huge.png")


def test_jpeg_header_over_pixel_limit():
    ok, buf = cv2.imencode(".jpg", np.zeros((64, 64), np.uint8))
    _raises(errors.ImageTooLarge, buf.tobytes(), "a.jpg", max_pixels=1000)


def test_dicom_rows_columns_over_limit(hu_ramp):
    _raises(errors.ImageTooLarge, dicom_bytes(make_dicom(hu_ramp)), "a.dcm", max_pixels=100)


def test_empty():
    _raises(errors.EmptyImage, b"", "empty.dcm")


def test_truncated_dicom(hu_ramp):
    data = dicom_bytes(make_dicom(hu_ramp))
    _raises(errors.UnreadableImage, data[: len(data) - 1000], "cut.dcm")


def test_random_bytes_named_dcm():
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    _raises(errors.UnreadableImage, data, "noise.dcm")


def test_dicom_without_pixel_data(hu_ramp):
    exc = _raises(
        errors.UnreadableImage, dicom_bytes(make_dicom(hu_ramp, pixel_data=False)), "a.dcm"
    )
    assert "pixel data" in str(exc)


def test_non_ct_modality(hu_ramp):
    data = dicom_bytes(make_dicom(hu_ramp, modality="MR"))
    assert "MR" in str(_raises(errors.NotCT, data, "mr.dcm"))
    assert decode_native(data, "mr.dcm", allow_non_ct=True).shape == (32, 48, 3)


def test_multiframe_dicom_rejected(hu_ramp):
    exc = _raises(errors.UnsupportedImage, dicom_bytes(make_dicom(hu_ramp, frames=3)), "mf.dcm")
    assert "multi-frame" in str(exc)


def test_unsupported_transfer_syntax(hu_ramp):
    from pydicom.encaps import encapsulate

    ds = make_dicom(hu_ramp)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: not decodable here
    ds.PixelData = encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    _raises(errors.UnsupportedImage, dicom_bytes(ds), "mpeg.dcm")


def test_unknown_format_and_truncated_png():
    _raises(errors.UnsupportedImage, b"GIF89a" + b"\0" * 100, "anim.gif")
    ok, buf = cv2.imencode(
        ".png", np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)
    )
    _raises(errors.UnreadableImage, buf.tobytes()[:200], "cut.png")


def test_byte_size_limit():
    _raises(errors.ImageTooLarge, b"\0" * 2000, "big.png", max_bytes=1000)


def test_resize_letterboxes_and_keeps_aspect():
    img = np.ones((50, 100, 3), np.float32)
    out = resize_to_model(img, 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.float32
    assert out[:4].max() == 0.0 and out[-4:].max() == 0.0  # padding rows top and bottom
    np.testing.assert_allclose(out[6:14], 1.0)


def test_decode_is_resize_of_native(hu_ramp):
    data = dicom_bytes(make_dicom(hu_ramp))
    np.testing.assert_allclose(
        decode(data, "a.dcm", size=16, head_gate=False),
        resize_to_model(decode_native(data, "a.dcm", head_gate=False), 16),
    )
