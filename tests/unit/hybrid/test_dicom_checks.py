"""Header consistency checks that run before any C decoder (hybrid_model/dicom_checks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_model import errors
from hybrid_model.preprocess import DecodeOptions, decode_image

from .conftest import dicom_bytes, j2k_ct, make_dicom, pydicom_file, read_dicom

# Decoding tests on ramps, zeros and CT_small (a spine slice): not heads, so the
# out-of-scope gate is off (tests/unit/hybrid/test_scope.py tests the gate).
NO_GATE = DecodeOptions(head_gate=False)

# Header values of the files used here that are PHI-like: no message may quote them.
PHI = ("PHANTOM", "CompressedSamples", "1CT1", "20040119", "1.3.6.1.4.1.5962")


def _raises(exc_type, data: bytes, name: str = "x.dcm", **options) -> str:
    with pytest.raises(exc_type) as info:
        decode_image(data, name, size=None, options=DecodeOptions(**options))
    message = str(info.value)
    assert info.value.reason == exc_type.reason and message.startswith(f"{name}: ")
    assert not any(value in message for value in PHI), message
    return message


def _ct(**attrs) -> bytes:
    ds = make_dicom(np.zeros((16, 24), np.float32))
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return dicom_bytes(ds)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "YBR_FULL_422", "HSV"])
def test_colour_photometric_is_not_greyscale_ct(photometric):
    assert "not greyscale CT" in _raises(
        errors.UnsupportedImage, _ct(PhotometricInterpretation=photometric)
    )


def test_palette_color_file_is_rejected():
    message = _raises(
        errors.UnsupportedImage, pydicom_file("examples_palette.dcm"), allow_non_ct=True
    )
    assert "PALETTE COLOR" in message and "not greyscale CT" in message


def test_unknown_photometric_is_not_quoted():
    message = _raises(errors.UnsupportedImage, _ct(PhotometricInterpretation="MONOCHROME3"))
    assert "unrecognised value" in message


def test_missing_photometric_is_monochrome2_for_one_sample():
    out = decode_image(_ct(PhotometricInterpretation=None), "x.dcm", size=None, options=NO_GATE)
    assert out.native_shape == (16, 24) and out.flags == ()
    _raises(errors.UnsupportedImage, _ct(PhotometricInterpretation=None, SamplesPerPixel=3))


def test_samples_per_pixel_must_be_one():
    assert "SamplesPerPixel is 3" in _raises(errors.UnsupportedImage, _ct(SamplesPerPixel=3))


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"BitsAllocated": 12}, "BitsAllocated 12"),
        ({"BitsAllocated": 1}, "BitsAllocated 1"),
        ({"BitsAllocated": 64}, "BitsAllocated 64"),
        ({"BitsStored": 0, "HighBit": 0}, "BitsStored 0"),
        ({"BitsStored": 17}, "BitsStored 17"),
        ({"HighBit": 16}, "HighBit 16"),
        ({"PixelRepresentation": 2}, "PixelRepresentation 2"),
        ({"BitsStored": None}, "BitsStored is missing"),
        ({"PixelRepresentation": None}, "PixelRepresentation is missing"),
    ],
)
def test_bits_and_representation(attrs, expected):
    assert expected in _raises(errors.UnreadableImage, _ct(**attrs))


def test_native_32_bit_is_allowed():
    stored = np.arange(16 * 24, dtype=np.int32).reshape(16, 24) - 1024
    ds = make_dicom(stored.astype(np.float32), intercept=0.0)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelData = stored.tobytes()
    out = decode_image(dicom_bytes(ds), "x.dcm", size=None, options=NO_GATE)
    assert out.native_shape == (16, 24)


def test_native_pixel_data_shorter_than_the_header_says():
    ds = make_dicom(np.zeros((16, 24), np.float32))
    ds.PixelData = ds.PixelData[:-100]
    assert "truncated" in _raises(errors.UnreadableImage, dicom_bytes(ds))


def test_compressed_syntax_needs_encapsulated_pixel_data():
    data = _ct()
    # pydicom will not write native data under a compressed syntax: swap the UID in the bytes
    # (Explicit VR Little Endian and RLE Lossless have the same length, 20 bytes padded).
    assert data.count(b"1.2.840.10008.1.2.1\0") == 1
    data = data.replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.5\0")
    assert "not encapsulated" in _raises(errors.UnreadableImage, data)


def _encapsulated(codestream: bytes, uid: str = "1.2.840.10008.1.2.4.90", **attrs) -> bytes:
    from pydicom.encaps import encapsulate

    ds = make_dicom(np.zeros((128, 128), np.float32))
    ds.file_meta.TransferSyntaxUID = uid
    empty_items = b"\xfe\xff\x00\xe0\0\0\0\0" * 2  # an empty offset table and fragment
    ds.PixelData = encapsulate([codestream]) if codestream else empty_items
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    for key, value in attrs.items():
        setattr(ds, key, value)
    return dicom_bytes(ds)


def _codestream(data: bytes) -> bytes:
    from pydicom.encaps import generate_fragments

    return b"".join(list(generate_fragments(read_dicom(data).PixelData))[1:])


def test_no_non_empty_fragment():
    assert "non-empty fragment" in _raises(errors.UnreadableImage, _encapsulated(b""))


def test_syntax_must_match_the_codestream():
    j2k = _codestream(j2k_ct())
    jpeg = _codestream(pydicom_file("JPGExtended.dcm"))
    assert "JPEG codestream (no SOI)" in _raises(
        errors.UnreadableImage, _encapsulated(j2k, "1.2.840.10008.1.2.4.70")
    )
    assert "not a JPEG 2000 codestream" in _raises(errors.UnreadableImage, _encapsulated(jpeg))
    assert "the codestream is JPEG" in _raises(
        errors.UnreadableImage, _encapsulated(jpeg, "1.2.840.10008.1.2.4.80")
    )
    rle = _codestream(pydicom_file("MR_small_RLE.dcm"))
    assert "RLE" in _raises(errors.UnreadableImage, _encapsulated(rle[:40], "1.2.840.10008.1.2.5"))


@pytest.mark.parametrize(
    "attrs",
    [
        {"Rows": 64},
        {"Columns": 127},
        {"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7},  # 16-bit codestream
    ],
)
def test_j2k_codestream_must_agree_with_the_header(attrs):
    message = _raises(errors.UnreadableImage, j2k_ct(**attrs))
    assert "codestream is 128x128 with 1 component(s) of 16 bits" in message


def test_rle_segments_must_match_bits_allocated():
    ds = read_dicom(pydicom_file("MR_small_RLE.dcm"))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    assert "2 segment(s)" in _raises(errors.UnreadableImage, dicom_bytes(ds), allow_non_ct=True)


def test_j2k_header_claiming_32_bits_is_refused_before_decoding():
    assert "BitsAllocated 32" in _raises(errors.UnreadableImage, j2k_ct(BitsAllocated=32))


def test_compressed_pixel_data_without_file_meta_is_unsupported():
    from pydicom.filewriter import dcmwrite

    ds = read_dicom(j2k_ct())
    del ds.file_meta
    ds.preamble = None
    import io

    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=False, little_endian=True)
    assert "no TransferSyntaxUID" in _raises(errors.UnsupportedImage, buf.getvalue())


def test_decoded_shape_must_be_rows_by_columns(monkeypatch):
    import hybrid_model.dicom as dicom

    monkeypatch.setattr(dicom, "decode_frame", lambda *a, **k: np.zeros((16, 23), np.int16))
    assert "returned 16x23" in _raises(errors.UnreadableImage, _ct())


def test_unexpected_exception_becomes_unreadable_with_its_type(monkeypatch):
    import hybrid_model.dicom as dicom

    def boom(*args, **kwargs):
        raise ZeroDivisionError("PHANTOM^TEST")  # a message that could hold a header value

    monkeypatch.setattr(dicom, "decode_frame", boom)
    message = _raises(errors.UnreadableImage, _ct())
    assert "ZeroDivisionError" in message


def test_no_plugin_for_the_syntax_is_unsupported(monkeypatch):
    import hybrid_model.decoders as decoders

    monkeypatch.setattr(decoders, "available_plugins", lambda uid: ())
    monkeypatch.setattr(decoders, "gdcm_available", lambda: False)
    assert "no installed plugin" in _raises(errors.UnsupportedImage, j2k_ct())


def test_real_ct_files_pass_every_check():
    for name, shape in (("CT_small.dcm", (128, 128)), ("693_J2KI.dcm", (512, 512))):
        options = NO_GATE if name == "CT_small.dcm" else DecodeOptions()  # 693: a head
        out = decode_image(pydicom_file(name), name, size=None, options=options)
        assert out.native_shape == shape and out.flags == ()
    rep = decode_image(pydicom_file("J2K_pixelrep_mismatch.dcm"), "j.dcm", size=None)
    assert rep.native_shape == (512, 512)
