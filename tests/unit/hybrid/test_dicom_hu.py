"""Stored values -> HU: padding as air, the -1024 floor, and the flags of a rescale-less slice."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hybrid_model import errors
from hybrid_model.decoders import PixelModule
from hybrid_model.dicom import AIR_HU, MIN_HU, decode_dicom, padding_in_stored_form
from hybrid_model.preprocess import DecodeOptions, decode_image, hu_to_channels

from .conftest import dicom_bytes, make_dicom, pydicom_file, read_dicom

# Decoding tests on ramps, zeros and CT_small (a spine slice): not heads, so the
# out-of-scope gate is off (tests/unit/hybrid/test_scope.py tests the gate).
NO_GATE = DecodeOptions(head_gate=False)


def _hu(ds) -> tuple[np.ndarray, tuple[str, ...]]:
    out = decode_dicom(dicom_bytes(ds), "x.dcm", max_pixels=10**6)
    return out.hu, out.flags


def _padded_slice() -> tuple[np.ndarray, np.ndarray]:
    """HU with a ring outside the field of view marked by ``True`` in the mask."""
    hu = np.full((20, 20), 40.0, np.float32)
    outside = np.zeros((20, 20), bool)
    outside[:3], outside[:, :3] = True, True
    return hu, outside


def test_signed_padding_becomes_air():
    hu, outside = _padded_slice()
    stored = np.where(outside, -2000, hu + 1024).astype(np.int16)
    ds = make_dicom(hu, stored=stored)
    ds.PixelPaddingValue = -2000
    out, flags = _hu(ds)
    assert flags == ()
    np.testing.assert_array_equal(out[outside], AIR_HU)
    np.testing.assert_array_equal(out[~outside], 40.0)


def test_padding_written_in_unsigned_form_for_signed_data():
    hu, outside = _padded_slice()
    stored = np.where(outside, -2000, hu + 1024).astype(np.int16)
    ds = make_dicom(hu, stored=stored)
    ds.add_new(0x00280120, "US", 65536 - 2000)  # 63536: the bit pattern of -2000
    out, _ = _hu(ds)
    np.testing.assert_array_equal(out[outside], AIR_HU)


def test_unsigned_padding_that_would_be_bright():
    """Unsigned data padded with 0xFFFF: rescaled it is 64511 HU, white in every window."""
    hu, outside = _padded_slice()
    stored = np.where(outside, 65535, hu + 1024).astype(np.uint16)
    ds = make_dicom(hu, signed=False, stored=stored)
    ds.PixelPaddingValue = 65535
    out, _ = _hu(ds)
    np.testing.assert_array_equal(out[outside], AIR_HU)
    assert hu_to_channels(out)[outside].max() == 0.0


def test_padding_range_limit_is_inclusive():
    hu = np.array([[40, 40, 40, 40]], np.float32)
    stored = np.array([[-3000, -2500, -2000, 1064]], np.int16)
    ds = make_dicom(hu, stored=stored)
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = -2000, -3000
    out, _ = _hu(ds)
    np.testing.assert_array_equal(out, [[AIR_HU, AIR_HU, AIR_HU, 40.0]])


def test_padding_is_found_before_monochrome1_inversion():
    hu = np.array([[0.0, 40.0]], np.float32)
    stored = np.array([[0, 4095 - (40 + 1024)]], np.uint16)  # 0 is padding, not 3071 HU
    ds = make_dicom(hu, signed=False, bits_stored=12, photometric="MONOCHROME1", stored=stored)
    ds.PixelPaddingValue = 0
    out, _ = _hu(ds)
    np.testing.assert_array_equal(out, [[AIR_HU, 40.0]])


@pytest.mark.parametrize(
    ("value", "signed", "bits", "expected"),
    [
        (-2000, True, 16, -2000),
        (63536, True, 16, -2000),  # unsigned form, 16 bits
        (2096, True, 12, -2000),  # unsigned form within 12 bits stored
        (63536, True, 12, -2000),  # 16-bit unsigned form, 12 bits stored
        (1000, True, 16, 1000),
        (-1, False, 16, 65535),  # negative for unsigned data: the bit pattern
        (-1, False, 12, 4095),
        (0, False, 16, 0),
    ],
)
def test_padding_in_stored_form(value, signed, bits, expected):
    module = PixelModule(
        "1.2.840.10008.1.2.1", 1, 1, 16, bits, bits - 1, int(signed), "MONOCHROME2"
    )
    assert padding_in_stored_form(value, module) == expected


def test_far_below_air_clamps_to_minus_1024():
    hu = np.array([[-3024, -2000, -1024, -1000, 40]], np.float32)
    out, flags = _hu(make_dicom(hu))  # no padding element: -3024 is just out-of-field
    np.testing.assert_array_equal(out, [[MIN_HU, MIN_HU, MIN_HU, -1000, 40]])
    assert flags == ()


def test_real_ct_with_padding_decodes_without_flags():
    ds = read_dicom(pydicom_file("CT_small.dcm"))
    assert ds.PixelPaddingValue == -2000
    out = decode_dicom(pydicom_file("CT_small.dcm"), "ct.dcm", max_pixels=10**6)
    assert out.flags == () and out.hu.min() >= MIN_HU


def test_no_rescale_on_signed_hu_like_data_is_identity_with_flag():
    hu = np.array([[-1000, 0], [40, 80]], np.float32)
    ds = make_dicom(hu, intercept=0.0)
    del ds.RescaleSlope, ds.RescaleIntercept
    out, flags = _hu(ds)
    np.testing.assert_array_equal(out, hu)
    assert flags == ("no_rescale",)


def test_no_rescale_without_air_is_flagged_not_hu_like():
    """HU + 1024 stored unsigned, intercept lost: identity, and the result row says so."""
    stored = np.array([[24, 1024], [1064, 1104]], np.uint16)
    ds = make_dicom(stored.astype(np.float32), signed=False, intercept=0.0, stored=stored)
    del ds.RescaleSlope, ds.RescaleIntercept
    out, flags = _hu(ds)
    np.testing.assert_array_equal(out, stored.astype(np.float32))
    assert flags == ("no_rescale", "not_hu_like")
    decoded = decode_image(dicom_bytes(ds), "x.dcm", size=8, options=NO_GATE)
    assert decoded.flags == ("no_rescale", "not_hu_like") and decoded.pixels.shape == (8, 8, 3)


def test_only_intercept_missing_is_also_no_rescale():
    ds = make_dicom(np.array([[-1000.0, 40.0]], np.float32), intercept=0.0, slope=1.0)
    del ds.RescaleIntercept
    assert _hu(ds)[1] == ("no_rescale",)


def test_a_zero_slope_is_identity_and_flagged():
    """A zero slope would flatten the slice to its intercept: read as 1, and flagged."""
    ds = make_dicom(np.array([[-1000.0, 40.0]], np.float32), intercept=0.0, slope=1.0)
    ds.RescaleSlope = 0
    out, flags = _hu(ds)
    np.testing.assert_array_equal(out, [[-1000.0, 40.0]])
    assert flags == ("no_rescale",)


@pytest.mark.parametrize("slope", ["NaN", "1e308", "inf"])
def test_non_finite_rescale_is_unreadable(slope):
    ds = make_dicom(np.array([[-1000.0, 40.0]], np.float32))
    with warnings.catch_warnings():  # pydicom warns that NaN/inf are not valid DS values
        warnings.simplefilter("ignore")
        ds.RescaleSlope = slope
    with pytest.raises(errors.UnreadableImage, match="RescaleSlope"):
        _hu(ds)
