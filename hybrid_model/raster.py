"""PNG/JPEG bytes -> grey image, and how a 16-bit PNG is read (``png16``).

8-bit PNG and JPEG are already windowed exports: grey = value / 255. A 16-bit PNG is either
* a windowed export scaled to 0..65535 (hemoscan's own phantoms: the brain window), or
* an HU + 1024 export (value - 1024 = HU; the 12-bit CT range -1024..3071 is 0..4095).

``png16``: ``"windowed"`` (value / 65535), ``"hu1024"`` (HU, then the three CT windows like
DICOM), or ``"auto"`` (default), which reads HU + 1024 when ALL of these hold:
1. max <= 4095: the image fits the 12-bit CT range. A windowed export uses the full 16-bit
   scale: below 4095 it would be under 6 % grey everywhere, i.e. black.
2. >= 5 % of pixels lie in 924..1124 (soft tissue, -100..+100 HU): there is a head in it.
3. < 1 % of pixels equal the maximum: a windowed export saturates (bone clips at the window's
   top, a plateau), while in HU the densest bone is a handful of pixels.
Anything else is windowed. A near-black image reads the same either way. A 16-bit PNG whose
window was squeezed into 12 bits and does not clip (rare) would be misread: pass "windowed".
Colour 16-bit PNGs are never taken as HU by "auto". Limits are checked from the header (PNG
IHDR, JPEG SOF) before any pixel is decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from hybrid_model.errors import ImageTooLarge, UnreadableImage, UnsupportedImage

PNG16_MODES = ("auto", "windowed", "hu1024")
HU_OFFSET = 1024
_CT_MAX_STORED = 4095
_TISSUE = (924, 1124)  # -100..+100 HU
_MIN_TISSUE_FRACTION = 0.05
_MAX_PLATEAU_FRACTION = 0.01

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC) (ITU T.81, B.1.1.3).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class Raster:
    """A decoded raster: ``grey`` in [0, 1] (windowed), or ``hu`` when read as HU + 1024."""

    grey: np.ndarray | None
    hu: np.ndarray | None
    flags: tuple[str, ...] = ()


def png_size(data: bytes, name: str) -> tuple[int, int]:
    # IHDR is always the first chunk: length(4) 'IHDR'(4) width(4) height(4) (PNG spec 11.2.2).
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise UnreadableImage(f"{name}: truncated or malformed PNG header")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def jpeg_size(data: bytes, name: str) -> tuple[int, int]:
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


def looks_like_hu1024(img: np.ndarray) -> bool:
    """The ``auto`` rule of the module docstring, on a single-channel uint16 image."""
    if img.dtype != np.uint16 or img.ndim != 2 or img.size == 0:
        return False
    top = int(img.max())
    if top > _CT_MAX_STORED:
        return False
    tissue = np.count_nonzero((img >= _TISSUE[0]) & (img <= _TISSUE[1])) / img.size
    plateau = np.count_nonzero(img == top) / img.size
    return bool(tissue >= _MIN_TISSUE_FRACTION and plateau < _MAX_PLATEAU_FRACTION)


def _to_grey(img: np.ndarray, name: str) -> np.ndarray:
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            return img[:, :, 0]
        if channels in (3, 4):  # OpenCV's BGR(A); BGRA2GRAY drops alpha
            code = cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY
            return cv2.cvtColor(img, code)
        raise UnsupportedImage(f"{name}: {channels} colour channels are not supported")
    return img


def decode_raster(data: bytes, name: str, *, max_pixels: int, png16: str = "auto") -> Raster:
    """PNG or JPEG bytes -> ``Raster`` (header size checked against ``max_pixels`` first)."""
    if png16 not in PNG16_MODES:
        raise ValueError(f"png16 must be one of {', '.join(PNG16_MODES)}, not {png16!r}")
    height, width = png_size(data, name) if data.startswith(_PNG_MAGIC) else jpeg_size(data, name)
    if height * width > max_pixels:
        raise ImageTooLarge(f"{name}: {height * width} pixels is over the limit of {max_pixels}")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise UnreadableImage(f"{name}: the image data could not be decoded (truncated or corrupt)")
    single_channel = img.ndim == 2 or img.shape[2] == 1
    grey = _to_grey(img, name)
    if grey.dtype == np.uint8:
        return Raster(grey.astype(np.float32) / 255.0, None)
    if grey.dtype != np.uint16:
        raise UnsupportedImage(f"{name}: pixel type {grey.dtype} is not supported")
    if png16 == "hu1024" or (png16 == "auto" and single_channel and looks_like_hu1024(grey)):
        hu = grey.astype(np.float32) - np.float32(HU_OFFSET)
        return Raster(None, hu, ("png16_hu1024",))
    return Raster(grey.astype(np.float32) / 65535.0, None)
