"""A deterministic fuzz corpus made from real CT, and an abort finder that decodes it safely.

``generate_corpus(DIR)`` writes about 400 mutated DICOM/PNG/JPEG files (seeded, no network, a
few seconds, a few MB). The sources are pydicom's bundled test files (read from the package
folder: ``get_testdata_file`` may download a name it lacks) and re-encodings of CT_small made
here: JPEG 2000 (pylibjpeg-openjpeg), RLE (pydicom), JPEG Lossless and JPEG-LS (python-gdcm, a
dev dependency), PNG and JPEG (OpenCV). A file's name says its family: ``j2k-pi-rgb-003.dcm``
is the base ``j2k`` with the mutation ``pi-rgb``; ``pacs/<family>/IM00007`` is a suffix-less
PACS-style export of that family.

``python -m tests.utils.fuzz DIR`` generates the corpus in DIR (unless it has files), decodes
every file in a child process (``tests.utils.abort_finder.find_aborts``: an abort is recorded,
not fatal) and prints the outcome table per family (docs/fuzzing.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import re
import struct
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tests.utils.gdcm_encode import gdcm_encode

if TYPE_CHECKING:
    from tests.utils.abort_finder import Outcome

SEED = 20261201
PER_BASE = 2  # random truncations, header flips and pixel flips per base: about 440 files
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) little / big endian

# base name -> pydicom test file; every base is relabelled CT so the pixel decoders are reached.
BUNDLED = {
    "j2ki": "693_J2KI.dcm",
    "j2kpr": "J2K_pixelrep_mismatch.dcm",
    "j2knm": "JPEG2000.dcm",
    "jpgext": "JPGExtended.dcm",
    "jlsnl": "JPEGLSNearLossless_16.dcm",
    "mrrle": "MR_small_RLE.dcm",
    "bigend": "MR_small_bigendian.dcm",
    "deflate": "image_dfl.dcm",
}
SYNTAXES = {
    "j2k": "1.2.840.10008.1.2.4.90",
    "j2ki": "1.2.840.10008.1.2.4.91",
    "htj2k": "1.2.840.10008.1.2.4.201",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "jll": "1.2.840.10008.1.2.4.70",
    "jpeg": "1.2.840.10008.1.2.4.50",
    "jpgext": "1.2.840.10008.1.2.4.51",
    "rle": "1.2.840.10008.1.2.5",
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "bigend": "1.2.840.10008.1.2.2",
    "deflate": "1.2.840.10008.1.2.1.99",
    "bogus": "1.2.3.4.5.6.7",
}


def _set(**values: Any) -> Callable[[Any], None]:
    def apply(ds: Any) -> None:
        for key, value in values.items():
            if value is None:
                ds.pop(key, None)
            else:
                setattr(ds, key, value)

    return apply


def _swap_dims(ds: Any) -> None:
    rows, cols = int(ds.Rows), int(ds.Columns)
    ds.Rows, ds.Columns = (cols, rows) if rows != cols else (rows // 2, cols * 2)


def _raw(**values: bytes) -> Callable[[Any], None]:
    """Elements written as UN bytes: values a US/SS element cannot hold (odd length, 0xFFFF)."""

    def apply(ds: Any) -> None:
        from pydicom.datadict import tag_for_keyword

        for key, value in values.items():
            ds.add_new(tag_for_keyword(key), "UN", value)

    return apply


HEADER = {
    "pi-rgb": _set(PhotometricInterpretation="RGB"),
    "pi-ybr": _set(PhotometricInterpretation="YBR_FULL"),
    "pi-ybr422": _set(PhotometricInterpretation="YBR_FULL_422"),
    "pi-palette": _set(PhotometricInterpretation="PALETTE COLOR"),
    "pi-mono1": _set(PhotometricInterpretation="MONOCHROME1"),
    "pi-bogus": _set(PhotometricInterpretation="HOTDOG"),
    "spp3": _set(SamplesPerPixel=3),
    "spp3-rgb": _set(SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0),
    "spp0": _set(SamplesPerPixel=0),
    "ba1": _set(BitsAllocated=1),
    "ba8": _set(BitsAllocated=8),
    "ba12": _set(BitsAllocated=12),
    "ba32": _set(BitsAllocated=32),
    "ba64": _set(BitsAllocated=64),
    "bs-gt-ba": _set(BitsStored=20),
    "hb-oob": _set(HighBit=63),
    "rows0": _set(Rows=0),
    "cols0": _set(Columns=0),
    "rows-max": _set(Rows=65535),
    "dims-max": _set(Rows=65535, Columns=65535),
    "dims-big": _set(Rows=7000, Columns=7000),  # 49 M pixels: just under the 50 M limit
    "dims-swap": _swap_dims,
    "frames-huge": _set(NumberOfFrames=2147483647),
    "frames-0": _set(NumberOfFrames=0),
    "pixrep2": _set(PixelRepresentation=2),
    "slope0": _set(RescaleSlope=0),
    "slope-nan": _set(RescaleSlope="NaN"),
    "slope-inf": _set(RescaleSlope="Infinity"),
    "slope-huge": _set(RescaleSlope="1e308"),
    "intercept-nan": _set(RescaleIntercept="NaN"),
    "no-rescale": _set(RescaleSlope=None, RescaleIntercept=None),
    "pad-max": _raw(PixelPaddingValue=b"\xff\xff"),
    "pad-range": _raw(PixelPaddingValue=b"\x00\x80", PixelPaddingRangeLimit=b"\xff\x7f"),
    "pad-odd": _raw(PixelPaddingValue=b"\x01\x02\x03"),
}
FULL_BASES = ("ct", "j2k")  # native and compressed CT_small: every header and syntax mutation
SAMPLED = (6, 2)  # the other bases: pi-rgb + 5 sampled header mutations, 2 syntax swaps


class _Writer:
    """Numbers files per family; every fifth intact-prefix file gets no suffix (PACS style)."""

    def __init__(self, root: Path) -> None:
        self.root, self.files, self._n = root, list[Path](), Counter[str]()

    def add(self, family: str, data: bytes, suffix: str, *, bare_ok: bool = False) -> None:
        n = self._n[family]
        self._n[family] += 1
        total = len(self.files)
        if bare_ok and total % 5 == 0:
            path = self.root / (f"pacs/{family}/IM{n:05d}" if total % 10 else f"{family}-{n:03d}")
        else:
            path = self.root / f"{family}-{n:03d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files.append(path)


def family_of(path: Path) -> str:
    """``j2k-pi-rgb`` for ``j2k-pi-rgb-003.dcm``, ``pacs/j2k-trunc/IM00002`` and ``j2k-trunc-004``."""
    if re.fullmatch(r"IM\d+", path.name):
        return path.parent.name
    return re.sub(r"-\d+$", "", path.name.split(".")[0])


@contextlib.contextmanager
def _lenient_pydicom() -> Iterator[None]:
    """Let pydicom write the invalid values the corpus needs; restore the settings after."""
    from pydicom import config

    saved = (config.settings.reading_validation_mode, config.settings.writing_validation_mode)
    saved_un = config.replace_un_with_known_vr
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    config.replace_un_with_known_vr = False  # keep the UN bytes of _raw as they are
    try:
        yield
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = saved
        config.replace_un_with_known_vr = saved_un


def _read(data: bytes) -> Any:
    import pydicom

    return pydicom.dcmread(io.BytesIO(data), force=True)


def _save(ds: Any, *, file_format: bool = True) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=file_format)
    return buf.getvalue()


def _compressed(ct: bytes, uid: str, **kwargs: Any) -> bytes:
    ds = _read(ct)
    ds.compress(uid, generate_instance_uid=False, **kwargs)
    return _save(ds)


def dicom_bases(tmp: Path) -> dict[str, bytes]:
    """{base name: a well-formed CT DICOM file}: CT_small, its re-encodings, bundled files."""
    import pydicom.data

    folder = Path(pydicom.data.__file__).parent / "test_files"
    ct = (folder / "CT_small.dcm").read_bytes()
    bases = {
        "ct": ct,
        "j2k": _compressed(ct, SYNTAXES["j2k"], encoding_plugin="pylibjpeg"),
        "j2kl": _compressed(ct, SYNTAXES["j2ki"], encoding_plugin="pylibjpeg", j2k_psnr=[60]),
        "rle": _compressed(ct, SYNTAXES["rle"], encoding_plugin="pydicom"),
        "jll": gdcm_encode(ct, tmp, "JPEGLosslessProcess14_1"),
        "jls": gdcm_encode(ct, tmp, "JPEGLSLossless"),
    }
    for name, filename in BUNDLED.items():
        ds = _read((folder / filename).read_bytes())
        ds.Modality = "CT"
        bases[name] = _save(ds)
    return bases


def _layout(data: bytes) -> tuple[int, int]:
    """(end of the file meta group, start of the Pixel Data element) of a Part 10 file."""
    (group_length,) = struct.unpack("<I", data[140:144])
    meta_end = 144 + group_length
    starts = [i for tag in _PIXEL_TAGS if (i := data.find(tag, meta_end)) > 0]
    return meta_end, min(starts, default=(meta_end + len(data)) // 2)


def _with_syntax(data: bytes, uid: str) -> bytes:
    """The same dataset bytes under a file meta group that names another transfer syntax."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta_end, _ = _layout(data)
    meta = _read(data).file_meta
    meta.TransferSyntaxUID = uid
    buf = DicomBytesIO()
    write_file_meta_info(buf, meta, enforce_standard=True)
    return data[:132] + buf.getvalue() + data[meta_end:]


def _syntax(data: bytes) -> str:
    return str(_read(data).file_meta.TransferSyntaxUID)


def _flip(data: bytes, rng: random.Random, start: int, end: int, count: int) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        pos = rng.randrange(start, max(start + 1, end))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def _cuts(rng: random.Random, size: int, start: int, per_base: int) -> list[int]:
    """Offsets to truncate at: in the preamble, the file meta, the pixel header, the last byte,
    and ``per_base`` random ones in the pixel data."""
    fixed = [64, 140, start + 8, size - 1]
    rand = [rng.randrange(start + 9, size - 1) for _ in range(per_base)]
    return sorted({c for c in [*fixed, *rand] if 0 < c < size})


def _mutate_dicom(out: _Writer, base: str, data: bytes, per_base: int, seed: int) -> None:
    rng = random.Random(f"{seed}:{base}")
    meta_end, pixels = _layout(data)
    out.add(f"{base}-orig", data, ".dcm", bare_ok=True)
    for cut in _cuts(rng, len(data), pixels, per_base):
        out.add(f"{base}-trunc", data[:cut], ".dcm", bare_ok=cut >= 132)
    for i in range(per_base):
        out.add(f"{base}-flip-hdr", _flip(data, rng, meta_end, pixels, 1 + i % 3), ".dcm")
        flipped = _flip(data, rng, pixels + 12, len(data), 1 + 2 * i)
        out.add(f"{base}-flip-px", flipped, ".dcm", bare_ok=True)
    names, targets = list(HEADER), [k for k, uid in SYNTAXES.items() if uid != _syntax(data)]
    if base not in FULL_BASES:
        names = ["pi-rgb", *rng.sample(names[1:], SAMPLED[0] - 1)]
        targets = rng.sample(targets, SAMPLED[1])
    for name in names:
        ds = _read(data)
        HEADER[name](ds)
        out.add(f"{base}-{name}", _save(ds), ".dcm", bare_ok=True)
    for target in targets:
        out.add(f"{base}-ts-{target}", _with_syntax(data, SYNTAXES[target]), ".dcm", bare_ok=True)
    out.add(f"{base}-no-preamble", data[132:], ".dcm")  # starts with the group 0002 elements
    out.add(f"{base}-dicm-only", data[128:], ".dcm")  # 'DICM' without the 128 bytes before it
    ds = _read(data)
    del ds.file_meta
    out.add(f"{base}-no-meta", _save(ds, file_format=False), ".dcm")


def raster_bases(ct: bytes) -> dict[str, tuple[bytes, str]]:
    """{base: (bytes, suffix)}: CT_small in a soft-tissue window as 8/16-bit PNG and JPEG."""
    import cv2

    ds = _read(ct)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    grey = np.clip((hu - (40 - 190)) / 380.0, 0.0, 1.0)
    u8, u16 = (grey * 255).round().astype(np.uint8), (grey * 65535).round().astype(np.uint16)
    return {
        "png8": (cv2.imencode(".png", u8)[1].tobytes(), ".png"),
        "png16": (cv2.imencode(".png", u16)[1].tobytes(), ".png"),
        "jpeg": (cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), ".jpg"),
    }


def _png_chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, type) of each chunk after the 8-byte signature."""
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        yield pos, data[pos + 4 : pos + 8]
        pos += 12 + length


def _png_lies(data: bytes) -> dict[str, bytes]:
    def ihdr(width: int, height: int, depth: int = data[24], colour: int = data[25]) -> bytes:
        body = b"IHDR" + struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        return data[:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:]

    chunks = dict((kind, pos) for pos, kind in _png_chunks(data))
    idat, out = chunks[b"IDAT"], bytearray(data)
    out[idat + 9] ^= 0xFF  # inside the zlib stream: the IDAT CRC no longer matches
    return {
        "ihdr-huge": ihdr(0x7FFFFFFF, 0x7FFFFFFF),
        "ihdr-big": ihdr(7000, 7000),
        "ihdr-zero": ihdr(0, 0),
        "ihdr-depth": ihdr(128, 128, depth=3, colour=7),
        "crc-ihdr": data[:29] + bytes(4) + data[33:],
        "crc-idat": bytes(out),
        "idat-len": data[:idat] + b"\x7f\xff\xff\xff" + data[idat + 4 :],
    }


def _jpeg_lies(data: bytes) -> dict[str, bytes]:
    sof = data.find(b"\xff\xc0")
    dht = data.find(b"\xff\xc4")

    def frame(height: int, width: int) -> bytes:
        return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]

    return {
        "sof-huge": frame(65535, 65535),
        "sof-big": frame(7000, 7000),
        "sof-zero": frame(0, 0),
        "sof-comps": data[: sof + 9] + b"\x04" + data[sof + 10 :],
        "dht-zero": data[: dht + 5] + bytes(16) + data[dht + 21 :],
    }


def _mutate_raster(out: _Writer, base: str, data: bytes, suffix: str, seed: int) -> None:
    rng = random.Random(f"{seed}:{base}")
    out.add(f"{base}-orig", data, suffix, bare_ok=True)
    for cut in sorted({4, 20, 40, *(rng.randrange(41, len(data)) for _ in range(5))}):
        out.add(f"{base}-trunc", data[:cut], suffix, bare_ok=cut > 8)
    for i in range(4):
        out.add(f"{base}-flip", _flip(data, rng, 40, len(data), 1 + 3 * i), suffix, bare_ok=True)
    lies = _png_lies(data) if suffix == ".png" else _jpeg_lies(data)
    for name, lie in lies.items():
        out.add(f"{base}-{name}", lie, suffix, bare_ok=True)


def _random_files(out: _Writer, rng: random.Random) -> None:
    out.add("empty", b"", ".dcm")
    for suffix in (".dcm", ".png", ".jpg", ".jpeg", ".dicom"):
        out.add("random", rng.randbytes(rng.randrange(1, 8192)), suffix)
    for name, magic, suffix in (
        ("random-dicm", bytes(128) + b"DICM", ".dcm"),
        ("random-png", b"\x89PNG\r\n\x1a\n", ".png"),
        ("random-jpeg", b"\xff\xd8\xff", ".jpg"),
    ):
        for _ in range(3):
            out.add(name, magic + rng.randbytes(rng.randrange(16, 4096)), suffix, bare_ok=True)


def generate_corpus(root: str | Path, *, seed: int = SEED, per_base: int = PER_BASE) -> list[Path]:
    """Write the corpus into ``root`` (created) and return its files; same seed, same bytes."""
    out = _Writer(Path(root))
    out.root.mkdir(parents=True, exist_ok=True)
    with _lenient_pydicom(), tempfile.TemporaryDirectory() as tmp:
        bases = dicom_bases(Path(tmp))
        for name, data in bases.items():
            _mutate_dicom(out, name, data, per_base, seed)
        for name, (data, suffix) in raster_bases(bases["ct"]).items():
            _mutate_raster(out, name, data, suffix, seed)
        _random_files(out, random.Random(seed))
    return out.files


def _mutation(path: Path) -> str:
    family = family_of(path)
    base, _, rest = family.partition("-")
    return family if base in ("random", "empty") else rest


GROUPS: dict[str, Callable[[Path], str]] = {
    "family": family_of,
    "mutation": _mutation,
    "base": lambda p: family_of(p).partition("-")[0],
}


def _key(group: Callable[[Path], str]) -> Callable[[Outcome], str]:
    return lambda outcome: group(Path(outcome.path))


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the corpus in DIR (unless it holds files), decode it, print the table."""
    from tests.utils.abort_finder import find_aborts, table

    parser = argparse.ArgumentParser(prog="python -m tests.utils.fuzz", description=__doc__)
    parser.add_argument("dir", type=Path, help="corpus folder (generated when empty or missing)")
    parser.add_argument(
        "--by", nargs="+", choices=tuple(GROUPS), default=["family"], help="one table for each"
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per file (hung)")
    args = parser.parse_args(argv)
    files = sorted(p for p in args.dir.rglob("*") if p.is_file()) if args.dir.is_dir() else []
    outcomes = find_aborts(files or generate_corpus(args.dir), timeout_s=args.timeout)
    for by in args.by:
        print(table(outcomes, _key(GROUPS[by])), end="\n\n")
    for o in outcomes:
        if o.status in ("aborted", "hung", "unexpected"):
            print(f"{o.status.upper()}: {Path(o.path).relative_to(args.dir)}  {o.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
