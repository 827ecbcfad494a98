"""Frame headers read from JPEG, JPEG-LS, JPEG 2000 and RLE codestreams (no pixel decoded)."""

from __future__ import annotations

import struct

import pytest

from hybrid_model.codestream import (
    JP2_SIGNATURE,
    FrameHeader,
    is_j2k,
    j2k_frame_header,
    jpeg_frame_header,
    rle_segment_count,
)

from .conftest import j2k_ct, pydicom_file, read_dicom


def _frame(data: bytes) -> bytes:
    from pydicom.encaps import generate_fragments

    ds = read_dicom(data)
    return b"".join(list(generate_fragments(ds.PixelData))[1:])


def test_pydicom_private_jpeg_parser_is_still_there_and_answers_as_expected():
    """``jpeg_frame_header`` wraps pydicom.pixels.utils._get_jpg_parameters: pin its contract."""
    from pydicom.pixels.utils import _get_jpg_parameters

    info = _get_jpg_parameters(_frame(pydicom_file("JPGExtended.dcm")))
    assert {"height", "width", "components", "precision"} <= set(info)
    assert "interleave_mode" not in info  # only a JPEG-LS scan header sets it


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("JPGExtended.dcm", FrameHeader(1024, 256, 1, 12, jpeg_ls=False)),
        ("JPEGLSNearLossless_16.dcm", FrameHeader(50, 10, 1, 16, jpeg_ls=True)),
        ("SC_rgb_jpeg.dcm", FrameHeader(256, 256, 3, 8, jpeg_ls=False)),
    ],
)
def test_jpeg_and_jpeg_ls_frame_headers(name, expected):
    assert jpeg_frame_header(_frame(pydicom_file(name))) == expected


def test_jpeg_parser_changing_shape_fails_loudly(monkeypatch):
    import pydicom.pixels.utils as utils

    monkeypatch.setattr(utils, "_get_jpg_parameters", lambda src: {"rows": 1})
    with pytest.raises(RuntimeError, match="codestream.py"):
        jpeg_frame_header(b"\xff\xd8\xff\xc3")


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"\0" * 32])
def test_unreadable_jpeg_headers_are_none(data):
    assert jpeg_frame_header(data) is None


def test_j2k_siz_of_real_files():
    assert j2k_frame_header(_frame(pydicom_file("693_J2KI.dcm"))) == FrameHeader(512, 512, 1, 16)
    assert j2k_frame_header(_frame(j2k_ct())) == FrameHeader(128, 128, 1, 16)
    assert j2k_frame_header(_frame(pydicom_file("GDCMJ2K_TextGBR.dcm"))).components == 3


def test_j2k_inside_a_jp2_wrapper():
    codestream = _frame(j2k_ct())
    ftyp = struct.pack(">I4s", 20, b"ftyp") + b"jp2 " + b"\0\0\0\0" + b"jp2 "
    jp2c = struct.pack(">I4s", 8 + len(codestream), b"jp2c") + codestream
    jp2 = JP2_SIGNATURE + ftyp + jp2c
    assert is_j2k(jp2) and j2k_frame_header(jp2) == FrameHeader(128, 128, 1, 16)
    assert j2k_frame_header(JP2_SIGNATURE + ftyp) is None  # no codestream box


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\x4f\xff\x51" + b"\0" * 10, b"\xff\xd8" + b"\0" * 60, JP2_SIGNATURE + b"\0" * 8],
)
def test_unreadable_j2k_headers_are_none(data):
    assert j2k_frame_header(data) is None


def _rle(count: int, offsets: list[int], size: int = 200) -> bytes:
    header = struct.pack("<16I", count, *offsets, *([0] * (15 - len(offsets))))
    return header + b"\0" * (size - 64)


def test_rle_header():
    assert rle_segment_count(_frame(pydicom_file("MR_small_RLE.dcm"))) == 2
    assert rle_segment_count(_rle(2, [64, 100])) == 2
    assert rle_segment_count(_rle(0, [])) is None
    assert rle_segment_count(_rle(16, [64])) is None
    assert rle_segment_count(_rle(2, [60, 100])) is None  # first offset must be 64
    assert rle_segment_count(_rle(2, [64, 64])) is None  # offsets ascend
    assert rle_segment_count(_rle(2, [64, 500])) is None  # inside the fragment
    assert rle_segment_count(b"\x01\0\0\0") is None
