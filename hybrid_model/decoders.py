"""Which pydicom plugin decodes which transfer syntax, explicitly; GDCM only out of process.

pydicom 3 tries its plugins in a fixed order, GDCM first for JPEG, JPEG-LS and JPEG 2000; GDCM
aborts the whole process on some inconsistent files (docs/decoding.md). So pydicom never
picks here: ``IN_PROCESS_PLUGINS`` names the plugins allowed in this process, in order, and GDCM
runs only inside an ``isolated_decoder`` helper, where an abort costs one image.

``isolate`` (the worker's setting):
* ``"gdcm"`` (default): the in-process plugins first; GDCM in a helper when none is installed
  for the syntax or every one raised.
* ``"compressed"``: every compressed syntax decodes in a helper (its plugins, then GDCM).
* ``"off"``: GDCM is never used; native and in-process plugins only.
Native (uncompressed) pixel data is plain numpy: always in-process, no plugin; the plain
little-endian case skips pydicom's decoder machinery (``native_pixels``).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hybrid_model.errors import UnreadableImage, UnsupportedImage

ISOLATE_MODES = ("gdcm", "compressed", "off")

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE_SYNTAXES = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})

# Baseline 8-bit, Extended 12-bit, Lossless, Lossless SV1 (ITU T.81).
JPEG_SYNTAXES = frozenset({f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70)})
# JPEG-LS lossless and near-lossless (ISO/IEC 14495-1).
JPEG_LS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
# JPEG 2000 lossless and lossy, then HTJ2K lossless, lossless RPCL and lossy (ISO/IEC 15444).
J2K_SYNTAXES = frozenset({f"1.2.840.10008.1.2.4.{n}" for n in (90, 91, 201, 202, 203)})
RLE_SYNTAXES = frozenset({"1.2.840.10008.1.2.5"})

# Transfer syntax -> pydicom decoding plugins allowed in this process, tried in this order.
# pylibjpeg (libjpeg, openjpeg, rle) raises Python errors on the files that abort GDCM;
# "pydicom" is pydicom's own numpy RLE decoder.
IN_PROCESS_PLUGINS: dict[str, tuple[str, ...]] = {
    **{uid: ("pylibjpeg",) for uid in JPEG_SYNTAXES | JPEG_LS_SYNTAXES | J2K_SYNTAXES},
    **{uid: ("pylibjpeg", "pydicom") for uid in RLE_SYNTAXES},
}
# What pydicom's GDCM plugin decodes (pydicom/pixels/decoders/gdcm.py): never in this process.
GDCM_SYNTAXES = (
    JPEG_SYNTAXES | JPEG_LS_SYNTAXES | {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
)

_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class PixelModule:
    """The checked Image Pixel attributes of one greyscale frame (no PHI: it crosses processes)."""

    transfer_syntax: str
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric: str  # MONOCHROME1 or MONOCHROME2


class PluginsFailed(Exception):
    """Every plugin tried raised; the message lists each plugin's exception."""


def syntax_label(uid: str) -> str:
    """'JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)', for messages.

    Transfer syntax UIDs are defined by the standard, not by the patient: quoting them is safe.
    """
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


@functools.cache
def available_plugins(uid: str) -> tuple[str, ...]:
    """The plugins of ``IN_PROCESS_PLUGINS[uid]`` whose packages are installed, in table order."""
    from pydicom.pixels import get_decoder

    wanted = IN_PROCESS_PLUGINS.get(uid, ())
    if not wanted:
        return ()
    installed = set(get_decoder(uid).available_plugins)
    return tuple(p for p in wanted if p in installed)


@functools.cache
def gdcm_available() -> bool:
    """python-gdcm is installed (looked up only: pydicom imports it, nothing here calls it)."""
    return importlib.util.find_spec("gdcm") is not None


def decode_pixels(module: PixelModule, pixel_data: bytes, plugin: str) -> np.ndarray:
    """Decode one frame with one named plugin ("" for native data). Runs here and in helpers.

    The dataset handed to pydicom holds only the checked pixel module, so what decodes is exactly
    what was checked (and a defaulted PhotometricInterpretation is set).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import pixel_array
    from pydicom.uid import UID

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(module.transfer_syntax)
    ds.Rows, ds.Columns = module.rows, module.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = module.photometric
    ds.BitsAllocated, ds.BitsStored = module.bits_allocated, module.bits_stored
    ds.HighBit, ds.PixelRepresentation = module.high_bit, module.pixel_representation
    ds.PixelData = pixel_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pixel_array(ds, decoding_plugin=plugin)


def _failure(plugin: str, exc: Exception) -> str:
    """'pylibjpeg: RuntimeError: <the decoder's last line>' (pydicom wraps it in a list)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    detail = lines[-1] if lines else ""
    detail = detail.removeprefix(f"{plugin}: ")
    return f"{plugin}: {type(exc).__name__}: {detail}"[:_MESSAGE_CHARS]


def decode_with_plugins(
    module: PixelModule, pixel_data: bytes, plugins: Sequence[str]
) -> np.ndarray:
    """The first plugin that decodes wins; raises ``PluginsFailed`` listing each failure."""
    failures = []
    for plugin in plugins:
        try:
            return decode_pixels(module, pixel_data, plugin)
        except Exception as exc:  # a decoder's own error on a bad file: try the next one
            failures.append(_failure(plugin or "native", exc))
    raise PluginsFailed("; ".join(failures) or "no plugin to try")


def _isolated(module: PixelModule, pixel_data: bytes, plugins: Sequence[str], name: str):
    from hybrid_model.isolated_decoder import DecoderCrashed, DecoderFailed, default_pool

    try:
        return default_pool().decode(asdict(module), pixel_data, plugins)
    except DecoderCrashed as exc:
        raise UnreadableImage(f"{name}: the decoder crashed on this file ({exc})") from exc
    except DecoderFailed as exc:
        raise PluginsFailed(str(exc)) from exc


def decode_frame(
    module: PixelModule, pixel_data: bytes, name: str, *, isolate: str = "gdcm"
) -> np.ndarray:
    """Decode one checked frame to its stored values (HxW), following ``isolate``.

    Raises:
        UnsupportedImage: the syntax is not in the table, or nothing installed decodes it.
        UnreadableImage: every decoder raised on this file, or the isolated one crashed/hung.
    """
    if isolate not in ISOLATE_MODES:
        raise ValueError(f"isolate must be one of {', '.join(ISOLATE_MODES)}, not {isolate!r}")
    uid = module.transfer_syntax
    try:
        if uid in NATIVE_SYNTAXES:
            from hybrid_model.native_pixels import native_frame  # it imports this module

            frame = native_frame(module, pixel_data)
            if frame is not None:
                return frame
            return decode_with_plugins(module, pixel_data, ("",))
        if uid not in IN_PROCESS_PLUGINS:
            raise UnsupportedImage(f"{name}: transfer syntax {syntax_label(uid)} is not supported")
        local = available_plugins(uid)
        use_gdcm = isolate != "off" and uid in GDCM_SYNTAXES and gdcm_available()
        gdcm = ("gdcm",) if use_gdcm else ()
        if not local and not gdcm:
            raise UnsupportedImage(
                f"{name}: no installed plugin decodes {syntax_label(uid)}; install "
                "pylibjpeg-libjpeg / pylibjpeg-openjpeg / pylibjpeg-rle (or python-gdcm)"
            )
        if isolate == "compressed":
            return _isolated(module, pixel_data, local + gdcm, name)
        failures = []
        if local:
            try:
                return decode_with_plugins(module, pixel_data, local)
            except PluginsFailed as exc:
                failures.append(str(exc))
        if gdcm:
            try:
                return _isolated(module, pixel_data, gdcm, name)
            except PluginsFailed as exc:
                failures.append(str(exc))
        raise PluginsFailed("; ".join(failures))
    except PluginsFailed as exc:
        raise UnreadableImage(f"{name}: the pixel data could not be decoded ({exc})") from exc
