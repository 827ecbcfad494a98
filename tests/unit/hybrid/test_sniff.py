"""DICOM, PNG and JPEG recognised by content: PACS exports have neither suffix nor preamble."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from hybrid_model.preprocess import DecodeOptions, decode_image, is_dicom
from hybrid_model.sniff import SNIFF_BYTES, sniff

from .conftest import pydicom_file, read_dicom

# Decoding tests on ramps, zeros and CT_small (a spine slice): not heads, so the
# out-of-scope gate is off (tests/unit/hybrid/test_scope.py tests the gate).
NO_GATE = DecodeOptions(head_gate=False)


def _bare(implicit: bool, little: bool = True, with_meta: bool = False) -> bytes:
    """CT_small without the 128-byte preamble: the file meta group first, or no meta at all."""
    from pydicom.filewriter import dcmwrite

    ds = read_dicom(pydicom_file("CT_small.dcm"))
    if with_meta:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()[132:]  # starts with (0002,0000)
    del ds.file_meta
    ds.preamble = None
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=implicit, little_endian=little)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "first_bytes"),
    [
        ({"implicit": True}, b"\x08\x00\x05\x00"),
        ({"implicit": False}, b"\x08\x00\x05\x00CS"),
        ({"implicit": False, "little": False}, b"\x00\x08\x00\x05CS"),
        ({"implicit": False, "with_meta": True}, b"\x02\x00\x00\x00UL"),
    ],
)
def test_dicom_without_preamble(kwargs, first_bytes):
    data = _bare(**kwargs)
    assert data.startswith(first_bytes) and data[128:132] != b"DICM"
    assert sniff(data[:SNIFF_BYTES]) == "dicom"


def test_preamble_suffix_less_pacs_export_decodes_as_dicom():
    data = _bare(implicit=True)
    assert is_dicom(data, "IM00001")
    out = decode_image(data, "IM00001", size=None, options=NO_GATE)
    reference = decode_image(
        pydicom_file("CT_small.dcm"), "CT_small.dcm", size=None, options=NO_GATE
    )
    np.testing.assert_array_equal(out.pixels, reference.pixels)
    assert out.flags == ()


def test_magic_numbers():
    ok, png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    ok, jpeg = cv2.imencode(".jpg", np.zeros((4, 4), np.uint8))
    assert sniff(png.tobytes()[:SNIFF_BYTES]) == "png"
    assert sniff(jpeg.tobytes()[:SNIFF_BYTES]) == "jpeg"
    assert sniff(pydicom_file("CT_small.dcm")[:SNIFF_BYTES]) == "dicom"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a" + b"\0" * 200,
        b"%PDF-1.7\n" + b"x" * 200,
        b"\x08\x00\x05\x00YZ\x0a\x00" + b"\0" * 124,  # group 0008, no VR, odd implicit length
        b"\x08\x00\x10\x00CS\x02\x00AB\x08\x00\x05\x00CS\x02\x00AB" + b"\0" * 100,  # descending
        bytes(300),
    ],
)
def test_not_images(data):
    assert sniff(data) is None


def test_random_bytes_are_not_dicom():
    rng = np.random.default_rng(0)
    hits = sum(
        sniff(rng.integers(0, 256, SNIFF_BYTES, dtype=np.uint8).tobytes()) is not None
        for _ in range(20_000)
    )
    assert hits == 0


def test_suffix_still_counts_for_unrecognised_content():
    assert is_dicom(b"\0" * 300, "slice.DCM") and not is_dicom(b"\0" * 300, "slice")


def test_content_wins_over_the_suffix():
    ok, png = cv2.imencode(".png", np.full((4, 4), 255, np.uint8))
    assert not is_dicom(png.tobytes(), "mislabelled.dcm")
    np.testing.assert_allclose(
        decode_image(png.tobytes(), "mislabelled.dcm", size=None, options=NO_GATE).pixels, 1.0
    )
