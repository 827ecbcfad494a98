"""The fast path for uncompressed little-endian pixel data (hybrid_model/native_pixels.py) gives
pydicom's array, dtype included, or stands aside for pydicom."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from hybrid_model import decoders, errors
from hybrid_model.decoders import (
    DEFLATED_LE,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    PixelModule,
    decode_frame,
    decode_pixels,
)
from hybrid_model.native_pixels import native_frame

_BASE = PixelModule(
    transfer_syntax=EXPLICIT_LE,
    rows=5,
    columns=7,
    bits_allocated=16,
    bits_stored=16,
    high_bit=15,
    pixel_representation=1,
    photometric="MONOCHROME2",
)


def _module(**fields: Any) -> PixelModule:
    """A 5 x 7 signed 16-bit frame, the fields changed; HighBit follows BitsStored."""
    module = replace(_BASE, **fields)
    return replace(module, high_bit=module.bits_stored - 1)


def _random_bytes(module: PixelModule, extra: int = 0, seed: int = 0) -> bytes:
    """Every bit random, the unused high ones included: they must not leak into values."""
    size = module.rows * module.columns * module.bits_allocated // 8 + extra
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _same_as_pydicom(module: PixelModule, data: bytes) -> np.ndarray:
    fast = native_frame(module, data)
    assert fast is not None, "the fast path stood aside"
    reference = decode_pixels(module, data, "")
    assert fast.dtype == reference.dtype and fast.shape == reference.shape
    assert np.array_equal(fast, reference)
    return fast


@pytest.mark.parametrize("syntax", [EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE])
@pytest.mark.parametrize("representation", [0, 1])
@pytest.mark.parametrize(("allocated", "stored"), [(8, 8), (8, 6), (16, 16), (16, 12), (32, 32)])
def test_gives_pydicoms_array(syntax, representation, allocated, stored):
    module = _module(
        transfer_syntax=syntax,
        bits_allocated=allocated,
        bits_stored=stored,
        pixel_representation=representation,
    )
    _same_as_pydicom(module, _random_bytes(module, seed=allocated + stored))


def test_12_of_16_bits_are_sign_extended_and_masked():
    """0xF800 stored in 12 bits is 0x800: -2048 signed, 2048 unsigned (high bits ignored)."""
    data = np.full(35, 0xF800, "<u2").tobytes()
    signed = _same_as_pydicom(_module(bits_stored=12, pixel_representation=1), data)
    unsigned = _same_as_pydicom(_module(bits_stored=12, pixel_representation=0), data)
    assert signed.dtype == np.int16 and int(signed[0, 0]) == -2048
    assert unsigned.dtype == np.uint16 and int(unsigned[0, 0]) == 2048


def test_odd_length_data_and_its_padding_byte():
    module = _module(rows=3, columns=5, bits_allocated=8, bits_stored=8, pixel_representation=0)
    for extra in (0, 1):  # 15 bytes as written, or padded to 16 (PS3.5 8.1.1)
        out = _same_as_pydicom(module, _random_bytes(module, extra))
        assert out.shape == (3, 5)


def test_excess_data_short_of_a_second_frame_is_ignored_like_pydicom():
    module = _module()
    _same_as_pydicom(module, _random_bytes(module, extra=68))


def test_returns_a_writeable_copy():
    module = _module()
    data = _random_bytes(module)
    out = native_frame(module, data)
    assert out is not None and out.flags.writeable
    out[...] = 0
    assert data == _random_bytes(module)


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        (_module(transfer_syntax=EXPLICIT_BE), 0),  # byte-swapped by pydicom
        (_module(transfer_syntax="1.2.840.10008.1.2.4.90"), 0),  # compressed
        (_module(), 70),  # a second frame's worth: pydicom reads it as one
        (_module(), -1),  # short: pydicom's error
        (_module(rows=70_000, columns=1), 0),  # pydicom refuses Rows over 65535
        (_module(bits_allocated=24, bits_stored=24), 0),
        (_module(bits_stored=17), 0),
        (_module(pixel_representation=2), 0),
        (_module(photometric="RGB"), 0),
    ],
)
def test_stands_aside_for_anything_unusual(module, extra):
    assert native_frame(module, _random_bytes(module, extra)) is None


def test_a_short_pixel_data_is_still_unreadable_through_decode_frame():
    """``dicom_checks`` refuses it first; decode_frame alone still gives pydicom's error, typed."""
    module = _module()
    with pytest.raises(errors.UnreadableImage, match="could not be decoded"):
        decode_frame(module, _random_bytes(module, extra=-1), "x.dcm")


def test_decode_frame_takes_the_fast_path_for_plain_native_data(monkeypatch):
    def no_pydicom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("pydicom's decoder was called")

    monkeypatch.setattr(decoders, "decode_with_plugins", no_pydicom)
    module = _module()
    out = decode_frame(module, _random_bytes(module), "x.dcm")
    assert out.shape == (5, 7)
    with pytest.raises(AssertionError, match="pydicom's decoder"):
        decode_frame(_module(transfer_syntax=EXPLICIT_BE), _random_bytes(module), "x.dcm")
