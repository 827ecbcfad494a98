"""Tell DICOM, PNG and JPEG apart by content: the first ``SNIFF_BYTES`` of a file are enough.

PACS exports are often named ``IM00001`` and many carry no 128-byte preamble, so neither the
suffix nor the 'DICM' marker at offset 128 finds them. Without a preamble a file starts with a
data element: the file meta group (0002,xxxx) or, with no meta, the dataset, whose first group is
almost always 0008 (Identifying: SpecificCharacterSet, ImageType, SOPClassUID...). We accept a
start that parses as consecutive, ascending data elements in one of the three native encodings.
"""

from __future__ import annotations

import struct

SNIFF_BYTES = 132
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_FIRST_GROUPS = (0x0002, 0x0008)
# PS3.5 Table 6.2-1; these have a 2-byte reserved field and a 4-byte length in explicit VR (7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
_UNDEFINED = 0xFFFFFFFF
_MAX_LENGTH = 1 << 26  # no value in the first groups of a slice is near 64 MiB


def _elements(data: bytes, endian: str, explicit: bool) -> tuple[int, bool]:
    """(data elements parsed from the start, whether the last value runs past the window).

    (0, False) as soon as something is not a data element of this encoding.
    """
    offset, count, previous = 0, 0, -1
    while offset + 8 <= len(data):
        group, element = struct.unpack(endian + "HH", data[offset : offset + 4])
        tag = group << 16 | element
        if (count == 0 and group not in _FIRST_GROUPS) or tag <= previous or group > 0x7FE0:
            return 0, False
        vr = data[offset + 4 : offset + 6]
        if not explicit:
            (length,), header = struct.unpack(endian + "I", data[offset + 4 : offset + 8]), 8
        elif vr in _SHORT_VRS:
            (length,), header = struct.unpack(endian + "H", data[offset + 6 : offset + 8]), 8
        elif vr in _LONG_VRS:
            if offset + 12 > len(data):
                return count + 1, True
            (length,), header = struct.unpack(endian + "I", data[offset + 8 : offset + 12]), 12
        else:
            return 0, False
        if length == _UNDEFINED:  # a sequence: its items follow, a dataset for sure
            return count + 1, True
        if length > _MAX_LENGTH or length % 2:  # values have even length (PS3.5 7.1.1)
            return 0, False
        previous, count, offset = tag, count + 1, offset + header + length
    return count, offset > len(data)


def _is_bare_dataset(data: bytes) -> bool:
    for endian, explicit in (("<", True), ("<", False), (">", True)):
        count, runs_past = _elements(data, endian, explicit)
        # Two elements, or one whose (long) value fills the rest of the window.
        if count >= 2 or (count == 1 and runs_past):
            return True
    return False


def sniff(data: bytes) -> str | None:
    """'dicom', 'png', 'jpeg' or None, from the first bytes (``SNIFF_BYTES`` suffice)."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data[128:132] == b"DICM":
        return "dicom"
    if _is_bare_dataset(data[:SNIFF_BYTES]):
        return "dicom"
    return None
