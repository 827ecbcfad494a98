"""Consistency checks of the Image Pixel module and the pixel data, before any C decoder runs.

Decoders trust the header: GDCM aborts the process (SIGABRT) on a JPEG 2000 frame whose header
says RGB with one sample, or a JPEG Lossless frame whose header claims 32 bits; others may read
past their buffers. Each check refuses such a file with a typed error naming the attribute
(never a PHI value: only pixel-module numbers and defined terms are quoted).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hybrid_model.codestream import (
    JPEG_SOI,
    FrameHeader,
    is_j2k,
    j2k_frame_header,
    jpeg_frame_header,
    rle_segment_count,
)
from hybrid_model.decoders import (
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    J2K_SYNTAXES,
    JPEG_LS_SYNTAXES,
    JPEG_SYNTAXES,
    NATIVE_SYNTAXES,
    RLE_SYNTAXES,
    PixelModule,
    syntax_label,
)
from hybrid_model.errors import UnreadableImage, UnsupportedImage

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
# Defined terms of PS3.3 C.7.6.3.1.2 (and retired ones): quoted in messages; anything else is not.
_KNOWN_PHOTOMETRIC = MONOCHROME + (
    "PALETTE COLOR", "RGB", "HSV", "ARGB", "CMYK", "YBR_FULL", "YBR_FULL_422",
    "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "XYB",
)  # fmt: skip
NATIVE_BITS = (8, 16, 32)
# JPEG codes at most 16 bits (T.81: 8/12 lossy, 2..16 lossless) and JPEG-LS 2..16 (14495-1).
# JPEG 2000 allows up to 38 bits, but a CT Image has BitsAllocated 16 (PS3.3 C.8.2.1.1.4), no
# CT scanner writes more, and a larger claim over a 16-bit codestream is the GDCM abort class.
COMPRESSED_BITS = (8, 16)
RLE_BITS = (8, 16, 32)  # RLE is byte segments (PS3.5 G.2); pure-Python decoders, no abort risk
_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian: encapsulated data starts with it
_HEAD_BYTES = 1 << 20  # enough of the codestream for every frame header


def _int(ds: Any, keyword: str, name: str, default: int | None = None) -> int:
    value = ds.get(keyword, None)
    if value is None or value == "":
        if default is None:
            raise UnreadableImage(f"{name}: {keyword} is missing from the DICOM header")
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise UnreadableImage(f"{name}: {keyword} is not a number") from exc


def transfer_syntax(ds: Any, name: str) -> str:
    """The file meta's syntax; without file meta, the native one pydicom detected while reading."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return str(uid)
    if ds["PixelData"].is_undefined_length:
        raise UnsupportedImage(
            f"{name}: compressed pixel data but no TransferSyntaxUID (the file has no file meta "
            "group), so the codec is unknown; re-export it as a DICOM Part 10 file"
        )
    implicit, little = ds.original_encoding
    if implicit:
        return IMPLICIT_LE
    return EXPLICIT_LE if little is not False else EXPLICIT_BE


def _photometric(ds: Any, samples: int, name: str) -> str:
    value = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if not value:
        if samples != 1:
            raise UnsupportedImage(
                f"{name}: no PhotometricInterpretation and {samples} samples per pixel: "
                "not greyscale CT"
            )
        return "MONOCHROME2"  # PS3.3 C.7.6.3.1.2: absent on a 1-sample image, grey is all it can be
    if value not in MONOCHROME:
        shown = value if value in _KNOWN_PHOTOMETRIC else "an unrecognised value"
        raise UnsupportedImage(
            f"{name}: PhotometricInterpretation is {shown}, not greyscale CT "
            "(MONOCHROME1 or MONOCHROME2)"
        )
    return value


def pixel_module(ds: Any, name: str) -> PixelModule:
    """Check and collect the Image Pixel module (Rows/Columns are checked in ``dicom``)."""
    samples = _int(ds, "SamplesPerPixel", name, default=1)
    photometric = _photometric(ds, samples, name)
    if samples != 1:
        raise UnsupportedImage(f"{name}: SamplesPerPixel is {samples}: not greyscale CT (1)")
    uid = transfer_syntax(ds, name)
    allocated = _int(ds, "BitsAllocated", name)
    stored = _int(ds, "BitsStored", name)
    high_bit = _int(ds, "HighBit", name, default=stored - 1)
    representation = _int(ds, "PixelRepresentation", name)
    allowed: tuple[int, ...] = COMPRESSED_BITS
    if uid in NATIVE_SYNTAXES:
        allowed = NATIVE_BITS
    elif uid in RLE_SYNTAXES:
        allowed = RLE_BITS
    if allocated not in allowed:
        raise UnreadableImage(
            f"{name}: BitsAllocated {allocated} is invalid for {syntax_label(uid)} "
            f"(allowed: {', '.join(map(str, allowed))})"
        )
    if not 1 <= stored <= allocated:
        raise UnreadableImage(f"{name}: BitsStored {stored} is not in 1..{allocated}")
    if not 0 <= high_bit < allocated:
        raise UnreadableImage(f"{name}: HighBit {high_bit} is not below BitsAllocated {allocated}")
    if representation not in (0, 1):
        raise UnreadableImage(f"{name}: PixelRepresentation {representation} is not 0 or 1")
    return PixelModule(
        transfer_syntax=uid,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        bits_allocated=allocated,
        bits_stored=stored,
        high_bit=high_bit,
        pixel_representation=representation,
        photometric=photometric,
    )


def _fragments(pixel_data: bytes) -> Iterator[bytes]:
    from pydicom.encaps import generate_fragments

    items = generate_fragments(pixel_data)
    next(items, None)  # the Basic Offset Table item (PS3.5 A.4), possibly empty
    yield from items


def _codestream_head(pixel_data: bytes, module: PixelModule, name: str) -> tuple[bytes, bytes]:
    """(first non-empty fragment, start of the frame's codestream) of single-frame data."""
    label = syntax_label(module.transfer_syntax)
    if not pixel_data.startswith(_ITEM_TAG):
        raise UnreadableImage(f"{name}: {label} pixel data is not encapsulated (no item tag)")
    first, parts, size = b"", [], 0
    try:
        for fragment in _fragments(pixel_data):
            if not fragment:
                continue
            first = first or fragment
            parts.append(fragment)
            size += len(fragment)
            if size >= _HEAD_BYTES:
                break
    except ValueError as exc:
        raise UnreadableImage(f"{name}: the encapsulated pixel data is malformed ({exc})") from exc
    if not first:
        raise UnreadableImage(f"{name}: the encapsulated pixel data has no non-empty fragment")
    return first, b"".join(parts)


def _compare(frame: FrameHeader, module: PixelModule, name: str, what: str) -> None:
    if (
        (frame.rows, frame.columns) != (module.rows, module.columns)
        or frame.components != 1
        or frame.precision > module.bits_allocated
    ):
        raise UnreadableImage(
            f"{name}: the {what} codestream is {frame.rows}x{frame.columns} with "
            f"{frame.components} component(s) of {frame.precision} bits, but the DICOM header "
            f"says {module.rows}x{module.columns}, 1 sample, BitsAllocated {module.bits_allocated}"
        )


def check_pixel_data(module: PixelModule, pixel_data: bytes, name: str) -> None:
    """The pixel data holds what the header says (length, encapsulation, codestream header)."""
    uid = module.transfer_syntax
    if uid in NATIVE_SYNTAXES:
        expected = module.rows * module.columns * module.bits_allocated // 8
        if len(pixel_data) < expected:
            raise UnreadableImage(
                f"{name}: the pixel data is truncated: {len(pixel_data)} bytes where "
                f"{module.rows}x{module.columns} pixels of {module.bits_allocated} bits need "
                f"{expected}"
            )
        return
    first, head = _codestream_head(pixel_data, module, name)
    if uid in JPEG_SYNTAXES | JPEG_LS_SYNTAXES:
        jpeg_ls = uid in JPEG_LS_SYNTAXES
        what = "JPEG-LS" if jpeg_ls else "JPEG"
        if not head.startswith(JPEG_SOI):
            raise UnreadableImage(f"{name}: the pixel data is not a {what} codestream (no SOI)")
        frame = jpeg_frame_header(head)
        if frame is None:
            raise UnreadableImage(f"{name}: the {what} frame header (SOF) cannot be read")
        if frame.jpeg_ls != jpeg_ls:
            found = "JPEG-LS" if frame.jpeg_ls else "JPEG"
            raise UnreadableImage(
                f"{name}: the transfer syntax says {what} but the codestream is {found}"
            )
        _compare(frame, module, name, what)
    elif uid in J2K_SYNTAXES:
        if not is_j2k(head):
            raise UnreadableImage(f"{name}: the pixel data is not a JPEG 2000 codestream")
        j2k = j2k_frame_header(head)
        if j2k is None:
            raise UnreadableImage(f"{name}: the JPEG 2000 SIZ header cannot be read")
        _compare(j2k, module, name, "JPEG 2000")
    elif uid in RLE_SYNTAXES:
        segments = rle_segment_count(first)
        if segments is None:
            raise UnreadableImage(f"{name}: the RLE header (64 bytes) is malformed")
        if segments != module.bits_allocated // 8:
            raise UnreadableImage(
                f"{name}: the RLE data has {segments} segment(s) where 1 sample of "
                f"{module.bits_allocated} bits needs {module.bits_allocated // 8}"
            )
