"""DICOM bytes -> Hounsfield units (one frame), with header checks before pixel decoding.

Never logs header values: patient name, ID and dates are PHI (DESIGN.md, reliability rules).
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from hybrid_model.errors import ImageTooLarge, NotCT, UnreadableImage, UnsupportedImage


def _read_dataset(data: bytes, name: str):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # force=True: files named .dcm without the 128-byte preamble are still read.
            return pydicom.dcmread(io.BytesIO(data), force=True)
    except InvalidDicomError as exc:
        raise UnreadableImage(f"{name}: not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises a wide range of types on garbage input
        raise UnreadableImage(f"{name}: not a readable DICOM file ({type(exc).__name__})") from exc


def _check_header(ds, name: str, max_pixels: int, allow_non_ct: bool) -> None:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnreadableImage(
            f"{name}: the DICOM file has no pixel data (truncated, or not an image)"
        )
    modality = str(ds.get("Modality", "") or "").upper()
    if not allow_non_ct and modality != "CT":
        shown = modality or "missing"
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
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise UnsupportedImage(f"{name}: colour DICOM is not a CT slice this model can score")


def _check_transfer_syntax(ds, name: str) -> None:
    from pydicom.pixels.decoders.base import get_decoder

    file_meta = getattr(ds, "file_meta", None)
    tsyntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if tsyntax is None or not tsyntax.is_compressed:
        return
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise UnsupportedImage(
            f"{name}: transfer syntax {tsyntax.name} ({tsyntax}) is not supported"
        ) from exc
    if not decoder.is_available:
        raise UnsupportedImage(
            f"{name}: no installed plugin decodes {tsyntax.name} ({tsyntax}); "
            "install pylibjpeg-libjpeg / pylibjpeg-openjpeg / pylibjpeg-rle or gdcm"
        )


def _stored_values(ds, name: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        raise UnsupportedImage(f"{name}: pixel data could not be decoded: {exc}") from exc
    except Exception as exc:  # truncated or corrupt pixel data
        raise UnreadableImage(f"{name}: pixel data is truncated or corrupt ({exc})") from exc
    if raw.ndim != 2:
        raise UnsupportedImage(f"{name}: expected one greyscale frame, got shape {raw.shape}")
    return raw


def _invert_monochrome1(raw: np.ndarray, ds) -> np.ndarray:
    """MONOCHROME1 shows low values bright; flip stored values so higher = denser.

    Done on stored values, before the rescale (PS3.3 C.7.6.3.1.2), within the BitsStored range.
    """
    bits = int(ds.get("BitsStored", raw.dtype.itemsize * 8) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -1 - raw.astype(np.int64)  # two's complement inversion keeps the signed range
    return (2**bits - 1) - raw.astype(np.int64)


def decode_dicom_hu(
    data: bytes, name: str, *, max_pixels: int, allow_non_ct: bool = False
) -> np.ndarray:
    """Single-frame DICOM bytes -> float32 HxW Hounsfield units."""
    ds = _read_dataset(data, name)
    _check_header(ds, name, max_pixels, allow_non_ct)
    _check_transfer_syntax(ds, name)
    raw = _stored_values(ds, name)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        raw = _invert_monochrome1(raw, ds)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return (raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)
