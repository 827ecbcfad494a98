"""Uncompressed little-endian Pixel Data straight to numpy, as pydicom's native decoder does it.

pydicom's ``pixel_array`` builds a decoder runner, reads its options back from a dataset and
validates them before its one ``np.frombuffer``: about 0.5 ms of a 256² slice's decode for
nothing a checked single frame needs (issue 16; docs/decoding.md, "Cost per stage"). For the
plain case this module does what pydicom 3.0.2 does (``pixels/decoders/base.py``:
``_as_array_native``, ``_correct_unused_bits``): the first Rows x Columns values of the data
(the rest is padding), signed by PixelRepresentation, and, when BitsStored < BitsAllocated, the
unused high bits replaced by the sign (a left shift then an arithmetic right shift).
Anything else (big endian, data long enough to hold a second frame, values pydicom's own
validation would refuse) returns None and goes to pydicom unchanged.
"""

from __future__ import annotations

import sys

import numpy as np

from hybrid_model.decoders import DEFLATED_LE, EXPLICIT_LE, IMPLICIT_LE, PixelModule

# A deflated dataset's Pixel Data is inflated by dcmread: little endian like the other two.
LITTLE_ENDIAN_SYNTAXES = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE})
_BITS = (8, 16, 32)  # what ``dicom_checks`` allows natively; 1-bit data is packed
_MAX_SIDE = 2**16 - 1  # pydicom refuses Rows or Columns above this (a US value's range)
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


def _plain(module: PixelModule) -> bool:
    """The module is one whose decoding pydicom would neither refuse nor transform further."""
    return (
        module.transfer_syntax in LITTLE_ENDIAN_SYNTAXES
        and sys.byteorder == "little"
        and module.bits_allocated in _BITS
        and 1 <= module.bits_stored <= module.bits_allocated
        and module.pixel_representation in (0, 1)
        and 0 < module.rows <= _MAX_SIDE
        and 0 < module.columns <= _MAX_SIDE
        and module.photometric in _MONOCHROME
    )


def native_frame(module: PixelModule, pixel_data: bytes) -> np.ndarray | None:
    """The frame (Rows x Columns, a writeable copy) that pydicom's native decoder returns for
    ``pixel_data``, or None where pydicom must decode it (see the module docstring)."""
    if not _plain(module):
        return None
    count = module.rows * module.columns
    expected = count * (module.bits_allocated // 8)
    # From twice the frame's length on pydicom reads the excess as further frames (its
    # ``allow_excess_frames``), and a short buffer is its error: both stay with pydicom.
    if not expected <= len(pixel_data) < 2 * expected:
        return None
    dtype = np.dtype(f"{'ui'[module.pixel_representation]}{module.bits_allocated // 8}")
    frame = np.frombuffer(pixel_data, dtype=dtype, count=count).reshape(module.rows, module.columns)
    frame = frame.copy()  # pydicom returns a writeable array
    unused = module.bits_allocated - module.bits_stored
    if unused:  # the high bits are not part of the value (PS3.5 8.1.1): sign-extend over them
        np.left_shift(frame, unused, out=frame)
        np.right_shift(frame, unused, out=frame)
    return frame
