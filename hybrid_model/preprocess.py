"""Bytes in, numpy out: decode a CT slice and prepare it for the network.

DICOM (recognised by content, ``sniff``, or a .dcm/.dicom name): stored values -> (MONOCHROME1
inverted) -> Hounsfield units via RescaleSlope/Intercept, padding as air, clamped at -1024 ->
three CT windows stacked as channels (brain, subdural, soft tissue). See ``dicom``.
PNG/JPEG: 8-bit ones are already windowed; a 16-bit PNG follows ``DecodeOptions.png16`` (an
HU + 1024 export gets the three windows like DICOM). See ``raster``. A windowed export's window
is estimated and undone (``greywindow``), so it too reaches the network as three HU windows.

``decode_image`` returns the pixels with ``flags`` that qualify them (docs/decoding.md):
* ``no_rescale``: a DICOM slice without RescaleSlope/RescaleIntercept, read as identity.
* ``not_hu_like``: with ``no_rescale``, no pixel is air (below -500): the values are probably
  not HU (e.g. HU + 1024 without its intercept); the score is suspect.
* ``png16_hu1024``: a 16-bit PNG read as HU + 1024.
Every failure is an ``ImageError`` subclass; a decoder's unexpected exception on a corrupt file
becomes ``UnreadableImage`` naming the exception type (the file's problem, not a transient one).
A slice that is not head CT (chest, abdomen, spine, a scout, no brain in a skull) is ``NotHead``
(reason ``not_head``): the out-of-scope gate, ``hybrid_model.scope``, decides from the HU image
(DICOM with its PixelSpacing, HU + 1024 PNGs) or from the grey image (windowed rasters), unless
``DecodeOptions.head_gate`` is off.

Limits are checked from the header (PNG IHDR, JPEG SOF, DICOM Rows x Columns) before any pixel
is decoded, so a hostile header cannot make a worker allocate gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from hybrid_model.decoders import ISOLATE_MODES
from hybrid_model.errors import (
    EmptyImage,
    ImageError,
    ImageTooLarge,
    NotHead,
    UnreadableImage,
    UnsupportedImage,
)
from hybrid_model.greywindow import pseudo_hu
from hybrid_model.raster import PNG16_MODES, decode_raster
from hybrid_model.scope import Scope, body_box, check_grey, check_hu
from hybrid_model.sniff import SNIFF_BYTES, sniff

if TYPE_CHECKING:
    from hybrid_model.dicom import DicomSlice

# (name, level, width) in HU. Brain and subdural windows follow common radiology practice; the
# soft-tissue window gives the network context (scalp, skull edge) the two narrow ones saturate.
WINDOWS = (("brain", 40, 80), ("subdural", 80, 200), ("soft_tissue", 40, 380))
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def window(
    hu: np.ndarray, level: float, width: float, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Map HU to [0, 1]: ``level - width/2`` -> 0, ``level + width/2`` -> 1, clipped outside.

    Args:
        hu: array of Hounsfield units, any shape.
        level: window centre in HU.
        width: window width in HU; must be > 0 (a zero width would divide by zero).
        out: a float32 array of ``hu``'s shape to write into (``hu_to_channels`` reuses one).
    """
    if not width > 0:
        raise ValueError(f"window width must be > 0, got {width!r}")
    hu = np.asarray(hu, dtype=np.float32)
    if out is None:
        out = np.empty(hu.shape, dtype=np.float32)
    np.subtract(hu, np.float32(level - width / 2.0), out=out)
    np.divide(out, np.float32(width), out=out)
    return np.clip(out, 0.0, 1.0, out=out)


def hu_to_channels(hu: np.ndarray) -> np.ndarray:
    """HxW Hounsfield units -> HxWx3 float32, one channel per entry of ``WINDOWS``.

    Each window is computed into one scratch plane: a fresh array per step costs four times as
    much (docs/decoding.md, "Cost per stage")."""
    hu = np.asarray(hu, dtype=np.float32)
    out = np.empty(hu.shape + (len(WINDOWS),), dtype=np.float32)
    plane = np.empty(hu.shape, dtype=np.float32)
    for i, (_, level, width) in enumerate(WINDOWS):
        out[..., i] = window(hu, level, width, out=plane)
    return out


def _kind(data: bytes, name: str) -> str | None:
    """'dicom' / 'png' / 'jpeg' by content; a .dcm/.dicom name counts when content says nothing."""
    kind = sniff(data[:SNIFF_BYTES])
    if kind is None and name.lower().endswith((".dcm", ".dicom")):
        return "dicom"
    return kind


def is_dicom(data: bytes, name: str = "") -> bool:
    """True for DICOM content (``sniff``), or unrecognised content named .dcm/.dicom."""
    return _kind(data, name) == "dicom"


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode; the worker builds one from its settings (hybrid_model reads none).

    Args:
        max_pixels: refuse images with more pixels (from the header, before decoding).
        max_bytes: refuse larger inputs.
        allow_non_ct: score DICOM whose Modality is not CT.
        png16: 16-bit PNG reading: "auto" | "windowed" | "hu1024" (see ``raster``).
        isolate: which DICOM decoders run in helper processes: "gdcm" | "compressed" | "off"
            (see ``decoders``).
        head_gate: refuse slices that are not head CT (``NotHead``, see ``scope``); off scores
            whatever decodes (the model's output on a chest means nothing).
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    allow_non_ct: bool = False
    png16: str = "auto"
    isolate: str = "gdcm"
    head_gate: bool = True

    def __post_init__(self) -> None:
        if self.png16 not in PNG16_MODES:
            raise ValueError(f"png16 must be one of {', '.join(PNG16_MODES)}, not {self.png16!r}")
        if self.isolate not in ISOLATE_MODES:
            raise ValueError(
                f"isolate must be one of {', '.join(ISOLATE_MODES)}, not {self.isolate!r}"
            )
        if self.max_pixels < 1 or self.max_bytes < 1:
            raise ValueError(f"max_pixels and max_bytes must be >= 1, got {self}")


@dataclass(frozen=True)
class Placement:
    """Where a decoded image lies: its index in its object (a volume's slices count from the
    most inferior), z along the slice normal in mm, InstanceNumber, and the raw study and
    series UIDs (DICOM; they stay in memory and are stored only as keyed pseudonyms);
    ``volume`` for the slices of one NIfTI object (which is its own series)."""

    index: int = 0
    z_mm: float | None = None
    instance: int | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    volume: bool = False


@dataclass(frozen=True)
class Decoded:
    """A decoded slice: float32 HxWx3 in [0, 1] (model size when resized), its native shape,
    flags (empty for a normal slice; see the module docstring), where it lies and, when
    resized, the square of the native image the pixels show (``Frame``)."""

    pixels: np.ndarray
    native_shape: tuple[int, int]
    flags: tuple[str, ...] = ()
    placement: Placement = Placement()
    frame: Frame | None = None


def _stretch(values: np.ndarray) -> np.ndarray:
    """Min..max -> 0..1: a very wide window, for values that are not HU (``not_hu_like``)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def dicom_scope(dicom: DicomSlice) -> Scope | None:
    """The gate's answer for a decoded DICOM slice; None for another modality (scored only
    with ``allow_non_ct``, and not in HU). Values that are not HU-like (``not_hu_like``: HU +
    1024 without its intercept) are judged as a grey image, from relative structure."""
    if dicom.modality != "CT":
        return None
    part, kind = dicom.body_part, dicom.image_type
    if "not_hu_like" in dicom.flags:
        return check_grey(_stretch(dicom.hu), dicom.spacing_mm, body_part=part, image_type=kind)
    return check_hu(dicom.hu, dicom.spacing_mm, body_part=part, image_type=kind)


def _require_head(scope: Scope | None, name: str) -> None:
    if scope is not None and not scope.head:
        raise NotHead(
            f"{name}: not a head CT slice: {scope.reason}; HEMOSCAN_HEAD_GATE=false "
            "(DecodeOptions.head_gate) scores it anyway"
        )


def _dicom_placement(dicom: DicomSlice) -> Placement:
    ident = dicom.identity
    if ident is None:
        return Placement()
    return Placement(
        z_mm=ident.z_mm,
        instance=ident.instance,
        study_uid=ident.study_uid,
        series_uid=ident.series_uid,
    )


def _decode_channels(
    data: bytes, name: str, options: DecodeOptions
) -> tuple[np.ndarray, tuple[str, ...], Placement]:
    kind = _kind(data, name)
    if kind == "dicom":
        from hybrid_model.dicom import decode_dicom

        dicom = decode_dicom(
            data,
            name,
            max_pixels=options.max_pixels,
            allow_non_ct=options.allow_non_ct,
            isolate=options.isolate,
        )
        if options.head_gate:
            _require_head(dicom_scope(dicom), name)
        return hu_to_channels(dicom.hu), dicom.flags, _dicom_placement(dicom)
    if kind is None:
        raise UnsupportedImage(f"{name}: not a DICOM, PNG or JPEG file")
    raster = decode_raster(data, name, max_pixels=options.max_pixels, png16=options.png16)
    if raster.hu is not None:
        if options.head_gate:
            _require_head(check_hu(raster.hu), name)
        return hu_to_channels(raster.hu), raster.flags, Placement()
    assert raster.grey is not None
    if options.head_gate:
        _require_head(check_grey(raster.grey), name)
    return hu_to_channels(pseudo_hu(raster.grey)), raster.flags, Placement()


def _check_size(data: bytes, name: str, options: DecodeOptions) -> None:
    if not data:
        raise EmptyImage(f"{name or 'image'}: the file is empty (0 bytes)")
    if len(data) > options.max_bytes:
        raise ImageTooLarge(
            f"{name}: {len(data)} bytes is over the limit of {options.max_bytes} bytes"
        )


def _to_model(
    native: np.ndarray, size: int | None, framing: str
) -> tuple[np.ndarray, Frame | None]:
    if size is None:
        return native, None
    frame = model_frame(native, framing)
    return resize_to_model(native, size, frame), frame


def decode_image(
    data: bytes,
    name: str,
    *,
    size: int | None = 256,
    options: DecodeOptions = DecodeOptions(),
    framing: str = "letterbox",
) -> Decoded:
    """Decode one image; ``size`` None keeps the native resolution, else ``resize_to_model`` of
    the model's ``framing`` (``model_frame``).

    Raises an ``ImageError`` subclass (its ``reason`` is the failure code) for bad input.
    """
    _check_size(data, name, options)
    try:
        native, flags, placement = _decode_channels(data, name, options)
    except (ImageError, MemoryError):
        raise
    except Exception as exc:  # a decoder bug on a corrupt file; only the type: values may be PHI
        raise UnreadableImage(
            f"{name}: decoding failed on this file ({type(exc).__name__})"
        ) from exc
    pixels, frame = _to_model(native, size, framing)
    return Decoded(pixels, (int(native.shape[0]), int(native.shape[1])), flags, placement, frame)


def _decode_volume(
    data: bytes, name: str, size: int | None, options: DecodeOptions, framing: str
) -> list[Decoded]:
    """The axial slices of a NIfTI volume (``hybrid_model.nifti``), inferior first. The head
    gate judges the volume as a whole: it is head CT when one of its slices is (the neck and
    the vertex of a head volume are scored with it: a series is read whole)."""
    from hybrid_model.nifti import read_volume

    slices = list(read_volume(data, name, max_pixels=options.max_pixels))
    if options.head_gate and slices:
        middle = len(slices) // 2  # the middle first: one head slice is enough
        order = sorted(slices, key=lambda v: abs(v.index - middle))
        first = check_hu(order[0].hu, order[0].spacing_mm)
        if not any(s.head for s in (first, *(check_hu(v.hu, v.spacing_mm) for v in order[1:]))):
            _require_head(first, name)
    out = []
    for v in slices:
        native = hu_to_channels(v.hu)
        pixels, frame = _to_model(native, size, framing)
        placement = Placement(index=v.index, z_mm=v.z_mm, instance=v.index + 1, volume=True)
        shape = (int(native.shape[0]), int(native.shape[1]))
        out.append(Decoded(pixels, shape, (), placement, frame))
    return out


def decode_object(
    data: bytes,
    name: str,
    *,
    size: int | None = 256,
    options: DecodeOptions = DecodeOptions(),
    framing: str = "letterbox",
) -> list[Decoded]:
    """Every image of one object: one for a DICOM, PNG or JPEG slice; a NIfTI volume's axial
    slices, inferior to superior. Raises an ``ImageError`` subclass for bad input (a volume
    fails or is scored as a whole)."""
    from hybrid_model.nifti import is_nifti

    if not is_nifti(data, name):
        return [decode_image(data, name, size=size, options=options, framing=framing)]
    _check_size(data, name, options)
    try:
        return _decode_volume(data, name, size, options, framing)
    except (ImageError, MemoryError):
        raise
    except Exception as exc:  # as decode_image: only the type, values may be PHI
        raise UnreadableImage(
            f"{name}: decoding failed on this volume ({type(exc).__name__})"
        ) from exc


def decode_native(
    data: bytes,
    name: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_non_ct: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    head_gate: bool = True,
) -> np.ndarray:
    """Decode one image to float32 HxWx3 in [0, 1] at its native resolution (default options).

    Raises an ``ImageError`` subclass (its ``reason`` is the failure code) for bad input.
    """
    options = DecodeOptions(
        max_pixels=max_pixels, max_bytes=max_bytes, allow_non_ct=allow_non_ct, head_gate=head_gate
    )
    return decode_image(data, name, size=None, options=options).pixels


FRAMINGS = ("letterbox", "head")
HEAD_MARGIN = 1.1  # the head frame's side: this x the head's long side
MAX_HEAD_ZOOM = 2.0  # and at least the image's long side / this (a vertex cap is not blown up)
_BODY_STEP = 0.05  # body: the soft-tissue window this far above the image's darkest value


@dataclass(frozen=True)
class Frame:
    """The square of a native image that the model sees: its top-left corner in native pixels
    (negative or past the edge where the square runs off the image: padded with 0, black in
    every window) and its side. Native pixel centre (r, c) lies at model pixel
    ((r - top + 0.5) x size / side - 0.5, likewise for c)."""

    top: int
    left: int
    side: int

    @classmethod
    def letterbox(cls, native_shape: tuple[int, int]) -> Frame:
        """The whole image, centred in the square of its long side."""
        height, width = int(native_shape[0]), int(native_shape[1])
        side = max(height, width)
        return cls(-((side - height) // 2), -((side - width) // 2), side)

    def overlap(self, height: int, width: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """Where the square and an image of ``height`` x ``width`` overlap: (the image's rows
        and columns, the square's), each a pair of slices (empty where they do not)."""
        r0, c0 = max(self.top, 0), max(self.left, 0)
        r1 = max(min(self.top + self.side, height), r0)
        c1 = max(min(self.left + self.side, width), c0)
        image = (slice(r0, r1), slice(c0, c1))
        square = (slice(r0 - self.top, r1 - self.top), slice(c0 - self.left, c1 - self.left))
        return image, square


def head_frame(native: np.ndarray) -> Frame:
    """The square around the head: centred on the body's bounding box, side ``HEAD_MARGIN`` x
    its long side, at least the image's long side / ``MAX_HEAD_ZOOM``. The body is found as the
    out-of-scope gate finds it (``scope.body_box``), in the soft-tissue window (channel 2) above
    the image's darkest value, so an HU slice and a windowed grey export of it (air at the
    window's floor) find the same head. Without a body: ``Frame.letterbox``.

    Why: a head fills 30 to 80 % of a 512 matrix's side; letterboxing the whole field of view
    into the model's 256 pixels spends up to half of them on air, and a small bleed shrinks with
    it (docs/experiments.md, "Head framing")."""
    height, width = native.shape[:2]
    soft = np.asarray(native[..., 2] if native.ndim == 3 else native, dtype=np.float32)
    box = body_box(soft, float(soft.min()) + _BODY_STEP)
    if box is None:
        return Frame.letterbox((height, width))
    top, left, h, w = box
    side = int(np.ceil(max(HEAD_MARGIN * max(h, w), max(height, width) / MAX_HEAD_ZOOM)))
    side = max(1, min(side, max(height, width)))
    return Frame(int(round(top + (h - side) / 2.0)), int(round(left + (w - side) / 2.0)), side)


def model_frame(native: np.ndarray, framing: str = "letterbox") -> Frame:
    """The frame a model with this ``framing`` (its metadata's ``framing``) sees of ``native``."""
    if framing == "head":
        return head_frame(native)
    if framing != "letterbox":
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
    return Frame.letterbox((int(native.shape[0]), int(native.shape[1])))


def _crop(img: np.ndarray, frame: Frame) -> np.ndarray:
    """The frame's square of ``img``, 0 where it runs off the image."""
    height, width = img.shape[:2]
    if frame.top == 0 and frame.left == 0 and frame.side == height == width:
        return np.asarray(img, dtype=np.float32)
    square = np.zeros((frame.side, frame.side) + img.shape[2:], dtype=np.float32)
    inside, within = frame.overlap(height, width)
    square[within] = img[inside]
    return square


def resize_to_model(img: np.ndarray, size: int = 256, frame: Frame | None = None) -> np.ndarray:
    """The ``frame`` of the image (default ``Frame.letterbox``: the whole image centred in a
    square, padded with 0 = black in every window), resized to ``size``.

    Aspect ratio is kept so anatomy is not stretched; ``peak`` in render.py undoes exactly this
    geometry. Shrinking uses INTER_AREA (no aliasing), enlarging INTER_LINEAR.
    """
    if frame is None:
        frame = Frame.letterbox((int(img.shape[0]), int(img.shape[1])))
    square = _crop(img, frame)
    if frame.side == size:
        return np.ascontiguousarray(square, dtype=np.float32)
    interp = cv2.INTER_AREA if frame.side > size else cv2.INTER_LINEAR
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
    head_gate: bool = True,
) -> np.ndarray:
    """``decode_image(...).pixels`` at ``size``: float32 size x size x 3 in [0, 1]."""
    options = DecodeOptions(max_pixels=max_pixels, allow_non_ct=allow_non_ct, head_gate=head_gate)
    return decode_image(data, name, size=size, options=options).pixels


__all__ = [
    "WINDOWS",
    "FRAMINGS",
    "DecodeOptions",
    "Decoded",
    "Frame",
    "ImageError",
    "Placement",
    "decode",
    "decode_image",
    "decode_object",
    "decode_native",
    "dicom_scope",
    "hu_to_channels",
    "is_dicom",
    "head_frame",
    "model_frame",
    "resize_to_model",
    "sniff",
    "window",
]
