"""Read the frame header of an encapsulated DICOM codestream without decoding any pixel.

The header checks in ``dicom_checks`` compare these with the DICOM header before a C decoder
sees the data: a codestream that disagrees with its header is where decoders abort (GDCM) or
overrun buffers, so such a file is refused first.

* JPEG (ITU T.81) and JPEG-LS (ISO/IEC 14495-1): the SOF / SOF55 segment, read by pydicom's
  ``_get_jpg_parameters`` (private; ``jpeg_frame_header`` fails loudly if it changes, and
  ``tests/unit/hybrid/test_codestream.py`` pins it).
* JPEG 2000 / HTJ2K (ISO/IEC 15444-1 A.5.1): the SIZ segment, after an optional JP2 box wrapper
  (15444-1 Annex I), parsed here (pydicom's public ``get_j2k_parameters`` gives the precision only).
* RLE (PS3.5 G.3.1): the 64-byte header, whose segment count is bytes-per-sample x samples.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

JPEG_SOI = b"\xff\xd8"
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
RLE_HEADER_BYTES = 64


@dataclass(frozen=True)
class FrameHeader:
    """What the codestream itself says about the image."""

    rows: int
    columns: int
    components: int
    precision: int
    jpeg_ls: bool = False


def jpeg_frame_header(codestream: bytes) -> FrameHeader | None:
    """The SOF (JPEG) or SOF55 (JPEG-LS) frame header, or None when it cannot be read.

    Raises:
        RuntimeError: pydicom's private helper is gone or answers in another shape (upgrade
            broke it): loud on purpose, so the header checks are never silently skipped.
    """
    try:
        from pydicom.pixels.utils import _get_jpg_parameters
    except ImportError as exc:  # pragma: no cover - only after a pydicom upgrade
        raise RuntimeError("pydicom.pixels.utils._get_jpg_parameters is gone") from exc
    info: dict[str, Any] = _get_jpg_parameters(codestream)
    if not info:
        return None
    try:
        return FrameHeader(
            rows=int(info["height"]),
            columns=int(info["width"]),
            components=int(info["components"]),
            precision=int(info["precision"]),
            # pydicom parses the scan header (NEAR, ILV) only after a SOF55 marker.
            jpeg_ls="interleave_mode" in info,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RuntimeError(
            f"pydicom's _get_jpg_parameters answered {sorted(info)}; update codestream.py"
        ) from exc


def _jp2_codestream_offset(data: bytes) -> int | None:
    """Offset of the contiguous codestream box ('jp2c') contents in a JP2 file."""
    offset = 0
    while offset + 8 <= len(data):
        length, box = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if length == 1:  # XLBox: a 64-bit length follows (15444-1 I.4)
            if offset + 16 > len(data):
                return None
            (length,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
            header = 16
        if box == b"jp2c":
            return offset + header
        if length == 0 or length < header:  # 0: box runs to the end; < header: malformed
            return None
        offset += length
    return None


def is_j2k(codestream: bytes) -> bool:
    """True for a raw J2K codestream (SOC) or a JP2 file (signature box)."""
    return codestream.startswith(b"\xff\x4f") or codestream.startswith(JP2_SIGNATURE)


def j2k_frame_header(codestream: bytes) -> FrameHeader | None:
    """The SIZ segment of a JPEG 2000 / HTJ2K codestream, or None when it cannot be read."""
    offset = 0
    if codestream.startswith(JP2_SIGNATURE):
        found = _jp2_codestream_offset(codestream)
        if found is None:
            return None
        offset = found
    siz = codestream[offset : offset + 43]
    if len(siz) < 43 or not siz.startswith(J2K_SOC_SIZ):
        return None
    # SOC(2) SIZ(2) Lsiz(2) Rsiz(2) Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz(4 each)
    # Csiz(2) then Ssiz of the first component (15444-1 Table A.9).
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", siz[8:24])
    (csiz,) = struct.unpack(">H", siz[40:42])
    if xsiz <= xosiz or ysiz <= yosiz:
        return None
    return FrameHeader(
        rows=ysiz - yosiz,
        columns=xsiz - xosiz,
        components=csiz,
        precision=(siz[42] & 0x7F) + 1,
    )


def rle_segment_count(fragment: bytes) -> int | None:
    """Number of RLE segments from the 64-byte header, or None for a malformed header.

    The header is 16 little-endian uint32: the count (1..15), then the segment offsets; the first
    offset is always 64 and the used ones ascend within the fragment (PS3.5 G.5).
    """
    if len(fragment) < RLE_HEADER_BYTES:
        return None
    values = struct.unpack("<16I", fragment[:RLE_HEADER_BYTES])
    count, offsets = values[0], values[1 : 1 + values[0]]
    if not 1 <= count <= 15 or offsets[0] != RLE_HEADER_BYTES:
        return None
    if any(b <= a for a, b in zip(offsets, offsets[1:], strict=False)):
        return None
    if offsets[-1] >= len(fragment):
        return None
    return count
