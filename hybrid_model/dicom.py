"""DICOM bytes -> Hounsfield units (one frame), with header checks before pixel decoding.

Order: read the dataset -> header checks (modality, size, frames; the pixel module and the pixel
data against each other, ``dicom_checks``) -> decode with an explicit plugin (``decoders``; GDCM
only in a helper process) -> exactly (Rows, Columns) -> HU.

HU semantics (docs/decoding.md):
* Stored values, MONOCHROME1 inverted within BitsStored, then HU = stored x RescaleSlope +
  RescaleIntercept (PS3.3 C.7.6.3.1.2, C.11.1.1.2).
* No RescaleSlope or no RescaleIntercept (both are Type 1 in the CT Image module): the missing
  one is taken as identity (slope 1, intercept 0) and the slice carries flag ``no_rescale``.
  Signed data with air (values below -500) is then already HU-like. If no pixel is below -500
  (no air: unsigned data such as HU + 1024) it carries ``not_hu_like`` too: its score is suspect.
  Nothing is guessed: the flags go into the result row.
* PixelPaddingValue (and PixelPaddingRangeLimit, inclusive; PS3.3 C.7.5.1.1.2) marks pixels
  outside the scanned field: they become air (-1000 HU). A padding value written in unsigned
  form for signed data (63536 for -2000) or negative for unsigned data is read in the stored
  two's complement. Padding is found on stored values, before MONOCHROME1 inversion.
* Below -1024 HU (e.g. -2000 or -3024 outside the field of view) clamps to -1024: nothing below
  air may become bright after any later arithmetic.

Never logs or quotes header values other than pixel-module numbers: patient name, ID, dates
and UIDs are PHI (DESIGN.md, reliability rules).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hybrid_model.decoders import PixelModule, decode_frame
from hybrid_model.dicom_checks import check_pixel_data, pixel_module
from hybrid_model.errors import ImageTooLarge, NotCT, UnreadableImage, UnsupportedImage

AIR_HU = -1000.0
MIN_HU = -1024.0
# Below this no stored value of a rescale-less slice is air: the values are probably not HU.
_AIR_EVIDENCE_HU = -500.0


@dataclass(frozen=True)
class SeriesIdentity:
    """Where a slice belongs and lies: its study and series (raw UIDs: they stay in the worker's
    memory and are stored only as keyed pseudonyms, ``hemoscan.privacy.pseudonym``),
    InstanceNumber, ImagePositionPatient, ImageOrientationPatient (row then column direction
    cosines), SliceThickness; each None when missing or malformed."""

    study_uid: str | None = None
    series_uid: str | None = None
    instance: int | None = None
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    thickness_mm: float | None = None

    @property
    def z_mm(self) -> float | None:
        """The position along the slice normal (row x column direction), the coordinate a
        series is ordered by (gantry tilt included); None without position and orientation."""
        if self.position is None or self.orientation is None:
            return None
        row, col = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        normal = np.cross(row, col)
        norm = float(np.linalg.norm(normal))
        if not norm > 1e-6:
            return None
        return float(np.dot(np.asarray(self.position), normal / norm))


def _floats(ds: Any, keyword: str, count: int) -> tuple[float, ...] | None:
    values = _numbers(ds, keyword)
    return values if values is not None and len(values) == count else None


def _uid(ds: Any, keyword: str) -> str | None:
    value = str(_optional(ds, keyword) or "").strip()
    return value[:64] or None


def series_identity(ds: Any) -> SeriesIdentity:
    """The series identity and geometry of a dataset (``SeriesIdentity``)."""
    try:
        instance = int(_optional(ds, "InstanceNumber"))
    except (TypeError, ValueError):
        instance = None
    position = _floats(ds, "ImagePositionPatient", 3)
    thickness = _floats(ds, "SliceThickness", 1)
    return SeriesIdentity(
        study_uid=_uid(ds, "StudyInstanceUID"),
        series_uid=_uid(ds, "SeriesInstanceUID"),
        instance=instance,
        position=(position[0], position[1], position[2]) if position else None,
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        thickness_mm=thickness[0] if thickness and thickness[0] > 0 else None,
    )


@dataclass(frozen=True)
class DicomSlice:
    """HU of one frame and the flags that qualify it (``no_rescale``, ``not_hu_like``), with
    what the out-of-scope gate (``hybrid_model.scope``) reads from the header: PixelSpacing in
    mm (None when missing or malformed), Modality, and BodyPartExamined and ImageType as hints
    (defined terms, never quoted in a message)."""

    hu: np.ndarray
    flags: tuple[str, ...] = ()
    spacing_mm: tuple[float, float] | None = None
    modality: str = "CT"
    body_part: str = ""
    image_type: tuple[str, ...] = ()
    identity: SeriesIdentity | None = None


def _optional(ds: Any, keyword: str) -> Any:
    """An optional element's value, None when absent or when pydicom cannot convert it (a
    malformed hint must not make the image unreadable)."""
    try:
        return ds.get(keyword, None)
    except Exception:  # pydicom raises many types on malformed values
        return None


def _numbers(ds: Any, keyword: str) -> tuple[float, ...] | None:
    """A numeric element's values (one or many) as finite floats; None when missing or
    malformed."""
    value = _optional(ds, keyword)
    if isinstance(value, int | float | str):  # a single value (SliceThickness)
        value = [value]
    try:
        values = tuple(float(v) for v in value or ())
    except (TypeError, ValueError):
        return None
    return values if values and all(math.isfinite(v) for v in values) else None


def _spacing(ds: Any) -> tuple[float, float] | None:
    """PixelSpacing (row, column) in mm, or None when missing, malformed or not positive."""
    values = _numbers(ds, "PixelSpacing")
    if values is not None and len(values) == 1:
        values *= 2
    if values is None or len(values) != 2 or min(values) <= 0:
        return None
    return values[0], values[1]


def _terms(value: Any) -> tuple[str, ...]:
    """A CS element as upper-case strings (a single string or a multi-valued element)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str | bytes) else list(value)
    out = []
    for item in items:
        text = item.decode("ascii", "replace") if isinstance(item, bytes) else str(item)
        out.append(text.strip().upper()[:64])
    return tuple(out)


def _header_hints(ds: Any) -> dict[str, Any]:
    try:
        part, image_type = (
            _terms(_optional(ds, "BodyPartExamined")),
            _terms(_optional(ds, "ImageType")),
        )
    except TypeError:  # not iterable: not a usable hint
        part, image_type = (), ()
    return {
        "spacing_mm": _spacing(ds),
        "modality": str(_optional(ds, "Modality") or "").strip().upper(),
        "body_part": part[0] if part else "",
        "image_type": image_type,
        "identity": series_identity(ds),
    }


@functools.cache
def _quiet_pydicom() -> None:
    """Keep header values out of logs: pydicom's validation warnings quote the invalid value
    (a patient name, a date), and its logger records them; hemoscan reports the file's
    problem itself, naming no value (DESIGN.md, no PHI in logs)."""
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").propagate = False


def _read_dataset(data: bytes, name: str) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    _quiet_pydicom()

    try:
        # force=True: files without the 128-byte preamble (PACS exports) are still read.
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except InvalidDicomError as exc:
        raise UnreadableImage(f"{name}: not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises a wide range of types on garbage input
        raise UnreadableImage(f"{name}: not a readable DICOM file ({type(exc).__name__})") from exc


def _check_header(ds: Any, name: str, max_pixels: int, allow_non_ct: bool) -> None:
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise UnsupportedImage(f"{name}: float pixel data (a parametric map) is not a CT slice")
        raise UnreadableImage(
            f"{name}: the DICOM file has no pixel data (truncated, or not an image)"
        )
    modality = str(ds.get("Modality", "") or "").upper()
    if not allow_non_ct and modality != "CT":
        shown = modality if modality.isalnum() and len(modality) <= 16 else "missing or invalid"
        raise NotCT(f"{name}: modality is {shown}, not CT (pass allow_non_ct to score it anyway)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise UnreadableImage(f"{name}: Rows/Columns missing or invalid") from exc
    if frames > 1:
        raise UnsupportedImage(
            f"{name}: multi-frame DICOM ({frames} frames) is not supported; "
            "split it into single-frame slices first"
        )
    if rows <= 0 or cols <= 0:
        raise UnreadableImage(f"{name}: image has zero rows or columns")
    if rows * cols > max_pixels:
        raise ImageTooLarge(f"{name}: {rows}x{cols} pixels is over the limit of {max_pixels}")


def _invert_monochrome1(raw: np.ndarray, module: PixelModule) -> np.ndarray:
    """MONOCHROME1 shows low values bright; flip stored values so higher = denser.

    Done on stored values, before the rescale (PS3.3 C.7.6.3.1.2), within the BitsStored range.
    """
    if module.pixel_representation == 1:
        return -1 - raw.astype(np.int64)  # two's complement inversion keeps the signed range
    return (2**module.bits_stored - 1) - raw.astype(np.int64)


def padding_in_stored_form(value: int, module: PixelModule) -> int:
    """A PixelPaddingValue as the decoded stored values hold it.

    The element is US or SS "as Pixel Data", and files get it wrong both ways: signed data with
    the value in unsigned form (63536 or, 12 bits stored, 2096 for -2000), unsigned data with a
    negative value. Both are read in the stored two's complement.
    """
    bits = module.bits_stored
    if module.pixel_representation == 1:
        if value >= 2 ** (bits - 1):
            width = bits if value < 2**bits else 16 if value < 2**16 else 32
            value -= 2**width
        return value
    return value & (2**bits - 1) if value < 0 else value


def _padding_value(ds: Any, keyword: str, module: PixelModule) -> int | None:
    value = ds.get(keyword, None)
    if isinstance(value, bytes | bytearray) and len(value) == 2:  # VR UN: raw little endian
        value = int.from_bytes(value, "little", signed=module.pixel_representation == 1)
    try:
        return padding_in_stored_form(int(value), module) if value is not None else None
    except (TypeError, ValueError):  # multi-valued or malformed: not a usable padding value
        return None


def _padding_mask(raw: np.ndarray, ds: Any, module: PixelModule) -> np.ndarray | None:
    value = _padding_value(ds, "PixelPaddingValue", module)
    if value is None:
        return None
    limit = _padding_value(ds, "PixelPaddingRangeLimit", module)
    low, high = sorted((value, value if limit is None else limit))
    return (raw >= low) & (raw <= high)


def _rescale(ds: Any, name: str) -> tuple[float, float, bool]:
    """(slope, intercept, complete): a missing or empty element counts as identity, and so does
    a zero slope (it would flatten the slice); either leaves the rescale incomplete, which the
    caller flags ``no_rescale``."""
    slope_value, intercept_value = ds.get("RescaleSlope", None), ds.get("RescaleIntercept", None)
    complete = slope_value not in (None, "") and intercept_value not in (None, "")
    try:
        slope, intercept = float(slope_value or 1), float(intercept_value or 0)
        if slope_value not in (None, "") and float(slope_value) == 0.0:
            complete = False  # read as 1 above (``0 or 1``)
    except (TypeError, ValueError) as exc:  # multi-valued or malformed
        raise UnreadableImage(f"{name}: RescaleSlope/RescaleIntercept is not a number") from exc
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise UnreadableImage(f"{name}: RescaleSlope/RescaleIntercept is NaN or infinite")
    return slope, intercept, complete


def to_hu(raw: np.ndarray, ds: Any, module: PixelModule, name: str = "image") -> DicomSlice:
    """Stored values (HxW) -> HU with padding as air, clamped at -1024, plus flags."""
    padding = _padding_mask(raw, ds, module)
    if module.photometric == "MONOCHROME1":
        raw = _invert_monochrome1(raw, module)
    slope, intercept, complete = _rescale(ds, name)
    with np.errstate(over="ignore", invalid="ignore"):
        hu = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if not np.isfinite(hu).all():  # e.g. RescaleSlope 1e308: a NaN/inf score is no answer
        raise UnreadableImage(f"{name}: RescaleSlope/RescaleIntercept put HU out of range")
    flags: list[str] = []
    if not complete:
        flags.append("no_rescale")
        scanned = hu if padding is None else hu[~padding]
        if scanned.size and float(scanned.min()) > _AIR_EVIDENCE_HU:
            flags.append("not_hu_like")
    if padding is not None:
        hu[padding] = AIR_HU
    np.maximum(hu, np.float32(MIN_HU), out=hu)
    return DicomSlice(hu, tuple(flags))


def decode_dicom(
    data: bytes,
    name: str,
    *,
    max_pixels: int,
    allow_non_ct: bool = False,
    isolate: str = "gdcm",
) -> DicomSlice:
    """Single-frame DICOM bytes -> float32 HxW Hounsfield units, flags and header hints.

    Raises an ``ImageError`` subclass for bad input (``reason`` is the failure code).
    """
    # pydicom converts values lazily and warns with the offending value: keep them out of logs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _read_dataset(data, name)
        _check_header(ds, name, max_pixels, allow_non_ct)
        module = pixel_module(ds, name)
        pixel_data = bytes(ds.PixelData)
        check_pixel_data(module, pixel_data, name)
        raw = decode_frame(module, pixel_data, name, isolate=isolate)
        if raw.shape != (module.rows, module.columns):
            raise UnreadableImage(
                f"{name}: the decoder returned {'x'.join(map(str, raw.shape))} values, the "
                f"header says {module.rows}x{module.columns}"
            )
        hints = _header_hints(ds)
        return replace(to_hu(raw, ds, module, name), **hints)
