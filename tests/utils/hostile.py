"""Hostile and odd objects, made from a real phantom DICOM (and a synthetic chest), each with the
outcome it must have."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

SCORED = "scored"


def _dataset(dcm: Path):  # type: ignore[no-untyped-def]
    import pydicom

    return pydicom.dcmread(dcm)


def _bytes(ds) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and a valid IHDR chunk claiming ``width`` x ``height``, no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    )


def hostile_objects(dcm: Path, png: Path, size_limit: int) -> dict[str, tuple[bytes, str]]:
    """{key: (bytes, expected outcome)}; the outcome is a failure reason or SCORED."""
    good = dcm.read_bytes()
    no_pixels = _dataset(dcm)
    del no_pixels.PixelData
    mr = _dataset(dcm)
    mr.Modality = "MR"
    multi = _dataset(dcm)
    multi.NumberOfFrames = 2
    multi.PixelData = multi.PixelData * 2
    grey = np.asarray(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), dtype=np.uint16)
    rgb = cv2.cvtColor((grey >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    rgb[..., 2] = np.clip(rgb[..., 2].astype(int) + 40, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", rgb)
    assert ok
    return {
        "hostile/zero-bytes.dcm": (b"", "empty"),
        "hostile/truncated.dcm": (good[: len(good) // 3], "unreadable"),
        "hostile/random-bytes.dcm": (os.urandom(4096), "unreadable"),
        "hostile/no-pixel-data.dcm": (_bytes(no_pixels), "unreadable"),
        "hostile/mr-not-ct.dcm": (_bytes(mr), "not_ct"),
        "hostile/huge-header.png": (png_claiming(100_000, 100_000), "too_large"),
        "hostile/over-size-limit.dcm": (good + b"\0" * size_limit, "too_large"),
        "hostile/ünïcode and spaces ✓.dcm": (good, SCORED),
        "hostile/multi-frame.dcm": (_bytes(multi), "unsupported"),
        "hostile/colour.jpg": (jpeg.tobytes(), SCORED),
        "hostile/chest.dcm": (_chest(), "not_head"),
    }


def _chest() -> bytes:
    """A synthetic chest slice, 256 x 256: valid CT that is not a head."""
    from tests.utils.nonhead import chest, dicom_bytes

    hu, spacing = chest(np.random.default_rng(0), 256)
    return dicom_bytes(hu, spacing)
