"""Bytes in, numpy out: decode a CT slice and prepare it for the network.

DICOM: stored values -> (MONOCHROME1 inverted) -> Hounsfield units via RescaleSlope/Intercept
-> three CT windows stacked as channels (brain, subdural, soft tissue).
PNG/JPEG: assumed already windowed (a PNG carries no HU), so the grey image, scaled by its dtype
maximum, is replicated to three channels.

Limits are checked from the header (PNG IHDR, JPEG SOF, DICOM Rows x Columns) before any pixel
is decoded, so a hostile header cannot make a worker allocate gigabytes.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from hybrid_model.errors import (
    EmptyImage,
    ImageError,
    ImageTooLarge,
    UnreadableImage,
    UnsupportedImage,
)

# (name, level, width) in HU. Brain and subdural windows follow common radiology practice; the
# soft-tissue window gives the network context (scalp, skull edge) the two narrow ones saturate.
WINDOWS = (("brain", 40, 80), ("subdural", 80, 200), ("soft_tissue", 40, 380))
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG start-of-frame markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC) (ITU T.81, B.1.1.3).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map HU to [0, 1]: ``level - width/2`` -> 0, ``level + width/2`` -> 1, clipped outside.

    Args:
        hu: array of Hounsfield units, any shape.
        level: window centre in HU.
        width: window width in HU; must be > 0 (a zero width would divide by zero).
    """
    if not width > 0:
        raise ValueError(f"window width must be > 0, got {width!r}")
    low = level - width / 2.0
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(width)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def hu_to_channels(hu: np.ndarray) -> np.ndarray:
    """HxW Hounsfield units -> HxWx3 float32, one channel per entry of ``WINDOWS``."""
    return np.stack([window(hu, level, width) for _, level, width in WINDOWS], axis=-1)


def is_dicom(data: bytes, name: str = "") -> bool:
    """True for the 'DICM' preamble marker or a .dcm/.dicom file name."""
    lowered = name.lower()
    return data[128:132] == b"DICM" or lowered.endswith((".dcm", ".dicom"))


def decode_native(
    data: bytes,
    name: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_non_ct: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Decode one image to float32 HxWx3 in [0, 1] at its native resolution.

    Raises an ``ImageError`` subclass (its ``reason`` is the failure code) for bad input.
    """
    if not data:
        raise EmptyImage(f"{name or 'image'}: the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name}: {len(data)} bytes is over the limit of {max_bytes} bytes")
    if is_dicom(data, name):
        from hybrid_model.dicom import decode_dicom_hu

        hu = decode_dicom_hu(data, name, max_pixels=max_pixels, allow_non_ct=allow_non_ct)
        return hu_to_channels(hu)
    if data.startswith(_PNG_MAGIC):
        height, width = _png_size(data, name)
    elif data.startswith(_JPEG_MAGIC):
        height, width = _jpeg_size(data, name)
    else:
        raise UnsupportedImage(f"{name}: not a DICOM, PNG or JPEG file")
    _check_pixels(height * width, name, max_pixels)
    return _decode_raster(data, name)


def _check_pixels(pixels: int, name: str, max_pixels: int) -> None:
    if pixels > max_pixels:
        raise ImageTooLarge(f"{name}: {pixels} pixels is over the limit of {max_pixels}")


def _png_size(data: bytes, name: str) -> tuple[int, int]:
    # IHDR is always the first chunk: length(4) 'IHDR'(4) width(4) height(4) (PNG spec 11.2.2).
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise UnreadableImage(f"{name}: truncated or malformed PNG header")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _jpeg_size(data: bytes, name: str) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise UnreadableImage(f"{name}: malformed JPEG marker stream")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (seg_len,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + seg_len
    raise UnreadableImage(f"{name}: truncated JPEG (no frame header found)")


def _decode_raster(data: bytes, name: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise UnreadableImage(f"{name}: the image data could not be decoded (truncated or corrupt)")
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels in (3, 4):  # OpenCV's BGR(A); BGRA2GRAY drops alpha
            code = cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY
            img = cv2.cvtColor(img, code)
        else:
            raise UnsupportedImage(f"{name}: {channels} colour channels are not supported")
    if img.dtype == np.uint8:
        grey = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        grey = img.astype(np.float32) / 65535.0
    else:
        raise UnsupportedImage(f"{name}: pixel type {img.dtype} is not supported")
    return np.repeat(grey[:, :, None], 3, axis=2)


def letterbox_geometry(native_shape: tuple[int, int]) -> tuple[int, int, int]:
    """(side, pad_top, pad_left) of the square that ``resize_to_model`` pads an image into."""
    height, width = int(native_shape[0]), int(native_shape[1])
    side = max(height, width)
    return side, (side - height) // 2, (side - width) // 2


def resize_to_model(img: np.ndarray, size: int = 256) -> np.ndarray:
    """Letterbox to a square (centred, padded with 0 = black in every window), then resize.

    Aspect ratio is kept so anatomy is not stretched; ``peak`` in render.py undoes exactly this
    geometry (``letterbox_geometry``). Shrinking uses INTER_AREA (no aliasing), enlarging
    INTER_LINEAR.
    """
    height, width = img.shape[:2]
    side, top, left = letterbox_geometry((height, width))
    if side != height or side != width:
        square = np.zeros((side, side) + img.shape[2:], dtype=np.float32)
        square[top : top + height, left : left + width] = img
    else:
        square = np.asarray(img, dtype=np.float32)
    if side == size:
        return np.ascontiguousarray(square, dtype=np.float32)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = cv2.resize(square, (size, size), interpolation=interp)
    if out.ndim == 2 and square.ndim == 3:
        out = out[:, :, None]
    return out.astype(np.float32, copy=False)


def decode(
    data: bytes,
    name: str,
    *,
    size: int = 256,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_non_ct: bool = False,
) -> np.ndarray:
    """``resize_to_model(decode_native(...))``: float32 size x size x 3 in [0, 1]."""
    native = decode_native(data, name, max_pixels=max_pixels, allow_non_ct=allow_non_ct)
    return resize_to_model(native, size)


__all__ = [
    "WINDOWS",
    "ImageError",
    "decode",
    "decode_native",
    "hu_to_channels",
    "letterbox_geometry",
    "resize_to_model",
    "window",
]
