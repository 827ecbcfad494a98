"""``decode_image`` / ``DecodeOptions`` / ``Decoded``, and the old functions on top of them."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from hybrid_model import errors
from hybrid_model.preprocess import (
    Decoded,
    DecodeOptions,
    decode,
    decode_image,
    decode_native,
    hu_to_channels,
    resize_to_model,
)

from .conftest import dicom_bytes, make_dicom

# Decoding tests on ramps, zeros and CT_small (a spine slice): not heads, so the
# out-of-scope gate is off (tests/unit/hybrid/test_scope.py tests the gate).
NO_GATE = DecodeOptions(head_gate=False)


def test_native_resolution_and_resized(hu_ramp):
    data = dicom_bytes(make_dicom(hu_ramp))
    native = decode_image(data, "a.dcm", size=None, options=NO_GATE)
    assert isinstance(native, Decoded) and native.native_shape == (32, 48)
    assert native.flags == () and native.pixels.dtype == np.float32
    np.testing.assert_allclose(native.pixels, hu_to_channels(hu_ramp), atol=1e-6)
    small = decode_image(data, "a.dcm", size=16, options=NO_GATE)
    assert small.pixels.shape == (16, 16, 3) and small.native_shape == (32, 48)
    np.testing.assert_array_equal(small.pixels, resize_to_model(native.pixels, 16))


def test_old_functions_are_decode_image(hu_ramp):
    data = dicom_bytes(make_dicom(hu_ramp))
    np.testing.assert_array_equal(
        decode_native(data, "a", head_gate=False),
        decode_image(data, "a", size=None, options=NO_GATE).pixels,
    )
    np.testing.assert_array_equal(
        decode(data, "a", size=20, head_gate=False),
        decode_image(data, "a", size=20, options=NO_GATE).pixels,
    )


def test_options_are_frozen_and_validated():
    options = DecodeOptions()
    assert (options.png16, options.isolate, options.allow_non_ct) == ("auto", "gdcm", False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.png16 = "windowed"  # type: ignore[misc]
    with pytest.raises(ValueError, match="isolate must be one of gdcm, compressed, off"):
        DecodeOptions(isolate="always")
    with pytest.raises(ValueError, match="max_pixels"):
        DecodeOptions(max_pixels=0)


def test_limits_come_from_the_options(hu_ramp):
    data = dicom_bytes(make_dicom(hu_ramp))
    with pytest.raises(errors.ImageTooLarge):
        decode_image(data, "a.dcm", options=DecodeOptions(max_pixels=100))
    with pytest.raises(errors.ImageTooLarge):
        decode_image(data, "a.dcm", options=DecodeOptions(max_bytes=100))
    mr = dicom_bytes(make_dicom(hu_ramp, modality="MR"))
    with pytest.raises(errors.NotCT):
        decode_image(mr, "mr.dcm")
    assert decode_image(mr, "mr.dcm", options=DecodeOptions(allow_non_ct=True)).flags == ()


def test_a_raster_decoder_bug_becomes_unreadable(monkeypatch):
    ok, buf = cv2.imencode(".png", np.zeros((4, 4), np.uint8))

    def broken(*args, **kwargs):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(cv2, "imdecode", broken)
    with pytest.raises(
        errors.UnreadableImage, match=r"a.png: decoding failed on this file \(IndexError\)"
    ):
        decode_image(buf.tobytes(), "a.png")


def test_memory_error_is_not_blamed_on_the_file(monkeypatch):
    ok, buf = cv2.imencode(".png", np.zeros((4, 4), np.uint8))

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cv2, "imdecode", exhausted)
    with pytest.raises(MemoryError):
        decode_image(buf.tobytes(), "a.png")
