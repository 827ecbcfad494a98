"""Phantom series on disk: DICOM series or PNG slices, masks, labels per slice and per series.

Layout of ``generate_series(out, ...)``:
* ``<out>/<series>/<slice>.dcm`` (or ``.png``), one file per slice; ``<series>`` is
  ``s00003``, ``<slice>`` is ``s00003_i012`` (instance 12, counted from the skull base);
* ``<out>/masks/<slice>.png``: the exact lesion mask of every positive slice (uint8 0/255, the
  slice's own pixel grid);
* ``<out>/labels.csv``: ``id,hemorrhage`` per slice (the Kaggle "Head CT - hemorrhage" layout,
  what ``hemoscan train`` and ``evaluate`` read; files are found in the series folders);
* ``<out>/PHANTOMS.txt``: says what the folder is (training marks its model phantom-trained);
* ``<out>/slices.csv``: per slice its series, instance, z, level (0 skull base .. 1 vertex),
  label, lesion kinds and pixels; ``<out>/series.csv``: per series its label, slice count,
  lesion kinds, mimics and the scanner (spacing, thickness, tilt, kernel, noise, variant).

DICOM: CT Image Storage, int16 stored values (HU + 1024, RescaleIntercept -1024), the padding
outside the reconstruction circle as PixelPaddingValue; one study and one series per phantom
with consistent UIDs, InstanceNumber, ImagePositionPatient, ImageOrientationPatient,
SliceThickness, SpacingBetweenSlices, PixelSpacing, GantryDetectorTilt and ConvolutionKernel;
invented, non-identifying patient values (PHANTOM^<n>). UIDs are derived from the seed, so a
rerun writes the same files.
PNG: an export as found in public sets: 8-bit of a window (level 25..50, width 70..140, or a
wide one), 16-bit of a window, or 16-bit HU + 1024, drawn per series (``png_export``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hybrid_model.synth.config import VARIANTS, Variant
from hybrid_model.synth.volume import Series, Slice, make_series

FORMATS = ("dcm", "png", "mixed")
STUDY_DATE = _dt.date(2000, 1, 1)


def series_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of series ``index``: independent of how many processes draw them."""
    return np.random.default_rng([seed, index])


def png_export(rng: np.random.Generator) -> dict[str, Any]:
    """How one series is exported to PNG (bit depth, window or HU + 1024)."""
    kind = rng.choice(["u8", "u16", "hu1024"], p=[0.6, 0.25, 0.15])
    if rng.random() < 0.8:
        level, width = rng.uniform(25, 50), rng.uniform(70, 140)
    else:
        level, width = rng.uniform(40, 80), rng.uniform(150, 400)
    return {"kind": str(kind), "level": round(float(level), 1), "width": round(float(width), 1)}


def to_png(hu: np.ndarray, export: dict[str, Any]) -> np.ndarray:
    if export["kind"] == "hu1024":
        return np.clip(np.round(hu + 1024.0), 0, 4095).astype(np.uint16)
    low = export["level"] - export["width"] / 2
    scaled = np.clip((hu - low) / export["width"], 0, 1)
    if export["kind"] == "u8":
        return np.round(scaled * 255).astype(np.uint8)
    return np.round(scaled * 65535).astype(np.uint16)


def _uid(seed: int, *parts: object):
    """A UID derived from the seed and ``parts`` (a rerun writes the same UIDs)."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["hemoscan-phantom", str(seed), *map(str, parts)])


def write_dicom_slice(
    path: Path, sl: Slice, series: Series, index: int, seed: int, description: str
) -> None:
    """One slice of a phantom CT series (see the module docstring for what is written)."""
    from hybrid_model.ctdicom import ct_dataset

    ds = ct_dataset(
        sl.hu,
        spacing=series.spacing,
        sop_uid=_uid(seed, index, "sop", sl.instance),
        padding_hu=series.meta["padding_hu"],
    )
    ds.StudyInstanceUID = _uid(seed, index, "study")
    ds.SeriesInstanceUID = _uid(seed, index, "series")
    ds.FrameOfReferenceUID = _uid(seed, index, "frame")
    ds.PatientName = f"PHANTOM^{index}"
    ds.PatientID = f"PHANTOM-{index:05d}"
    ds.PatientSex = "O"
    ds.StudyDescription = description
    ds.SeriesDescription = f"synthetic head CT {series.slice_mm:g} mm {series.meta['kernel']}"
    ds.StudyDate = ds.SeriesDate = STUDY_DATE.strftime("%Y%m%d")
    ds.StudyID = f"{index}"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.BodyPartExamined = "HEAD"
    ds.Manufacturer = "hemoscan phantom generator"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = sl.instance
    ds.ImagePositionPatient = [round(v, 4) for v in sl.position]
    ds.ImageOrientationPatient = [round(v, 6) for v in series.orientation]
    ds.SliceLocation = round(sl.position[2] + 0.5 * (sl.hu.shape[0] - 1) * series.spacing
                             * series.orientation[5], 4)  # fmt: skip
    ds.PatientPosition = "HFS"
    ds.SliceThickness = series.slice_mm
    # Centre to centre along the slice normal: the table feed times cos(tilt).
    ds.SpacingBetweenSlices = round(
        series.increment * float(np.cos(np.deg2rad(series.tilt_deg))), 4
    )
    ds.GantryDetectorTilt = series.tilt_deg
    ds.ConvolutionKernel = series.meta["kernel"]
    ds.KVP = 120
    ds.WindowCenter, ds.WindowWidth = 40, 80
    ds.save_as(path, enforce_file_format=True)


def _one_series(job: tuple) -> list[dict[str, Any]]:
    out, index, seed, fmt, size, variant, slice_mm, single = job
    rng = series_rng(seed, index)
    kind = fmt if fmt != "mixed" else ("dcm" if index % 2 == 0 else "png")
    pick = None
    if single:  # 2-D mode: one slice of the series, from the skull base to the vertex
        pick = "random"
    series = make_series(rng, variant, size, slice_mm=slice_mm, pick=pick)
    export = png_export(rng)
    sid = f"s{index:05d}"
    folder = Path(out) / sid
    folder.mkdir(parents=True, exist_ok=True)
    description = f"hemoscan synthetic phantom (seed {seed}, {variant.name})"
    records = []
    for sl in series.slices:
        slice_id = f"{sid}_i{sl.instance:03d}"
        path = folder / f"{slice_id}.{kind}"
        if kind == "dcm":
            write_dicom_slice(path, sl, series, index, seed, description)
        else:
            cv2.imwrite(str(path), to_png(sl.hu, export))
        mask_file = None
        if sl.label:
            mask_file = Path(out) / "masks" / f"{slice_id}.png"
            cv2.imwrite(str(mask_file), sl.mask.astype(np.uint8) * 255)
        records.append(
            {
                "id": slice_id,
                "series": sid,
                "file": str(path),
                "hemorrhage": sl.label,
                "mask": mask_file and str(mask_file),
                "instance": sl.instance,
                "z_mm": round(sl.position[2], 3),
                "level": round(sl.level, 4),
                "kinds": sl.kinds,
                "lesion_pixels": int(sl.mask.sum()),
                "format": kind if kind == "dcm" else f"png-{export['kind']}",
                "series_meta": {**series.meta, "slices": len(series.slices)},
            }
        )
    return records


def generate_series(
    out_dir: str | Path,
    count: int,
    seed: int,
    *,
    fmt: str = "dcm",
    size: int = 512,
    variant: str | Variant = "train",
    slice_mm: float | None = None,
    single: bool = False,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Write ``count`` phantom series (or, ``single``, one slice of each) into ``out_dir``.

    Uses ``workers`` processes (default: every core); the files do not depend on it.
    ``progress`` is called with the number of slices of each finished series.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        variant = VARIANTS[variant]
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), i, seed, fmt, size, variant, slice_mm, single) for i in range(count)]
    workers = max(1, min(workers or os.cpu_count() or 1, count))
    records: list[dict[str, Any]] = []
    if workers == 1:
        results = map(_one_series, jobs)
        for rec in results:
            records += rec
            if progress:
                progress(len(rec))
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for rec in pool.map(_one_series, jobs, chunksize=1):
                records += rec
                if progress:
                    progress(len(rec))
    _write_tables(out, records)
    return records


MARKER = """Synthetic head-CT phantoms written by `hemoscan phantoms` (hybrid_model/synth).
Not patient data. Models trained on them are phantom-trained and NOT clinically valid.
"""


def _write_tables(out: Path, records: list[dict[str, Any]]) -> None:
    (out / "PHANTOMS.txt").write_text(MARKER)
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "hemorrhage"])
        writer.writerows((r["id"], r["hemorrhage"]) for r in records)
    with open(out / "slices.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "series", "instance", "z_mm", "level", "hemorrhage", "kinds",
                         "lesion_pixels", "format", "file"])  # fmt: skip
        for r in records:
            writer.writerow([r["id"], r["series"], r["instance"], r["z_mm"], r["level"],
                             r["hemorrhage"], ";".join(r["kinds"]), r["lesion_pixels"],
                             r["format"], Path(r["file"]).relative_to(out)])  # fmt: skip
    by_series: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_series.setdefault(r["series"], []).append(r)
    with open(out / "series.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["series", "hemorrhage", "slices", "positive_slices", "kinds", "mimics",
                         "variant", "spacing_mm", "slice_mm", "tilt_deg", "kernel",
                         "noise_sigma_hu", "atrophy"])  # fmt: skip
        for sid, rows in by_series.items():
            m = rows[0]["series_meta"]
            kinds = sorted({k for r in rows for k in r["kinds"]})
            writer.writerow([sid, int(any(r["hemorrhage"] for r in rows)), m["slices"],
                             sum(r["hemorrhage"] for r in rows), ";".join(kinds),
                             ";".join(m["mimics"]), m["variant"], m["spacing_mm"], m["slice_mm"],
                             m["tilt_deg"], m["kernel"], m["noise_sigma_hu"], m["atrophy"]])  # fmt: skip


def slice_facts(root: str | Path) -> dict[str, tuple[float, float]]:
    """Per slice id of a phantom folder: (level, lesion area in mm²), from its ``slices.csv``
    and ``series.csv`` (the area from the mask's pixels and the series' pixel spacing; 0 for a
    normal slice); a slice whose series ``series.csv`` lacks is left out. ``{}`` for a folder
    without both tables."""
    root = Path(root)
    slices_csv, series_csv = root / "slices.csv", root / "series.csv"
    if not (slices_csv.is_file() and series_csv.is_file()):
        return {}
    with open(series_csv, newline="") as fh:
        spacing = {r["series"]: float(r["spacing_mm"]) for r in csv.DictReader(fh)}
    with open(slices_csv, newline="") as fh:
        return {
            r["id"]: (float(r["level"]), int(r["lesion_pixels"]) * spacing[r["series"]] ** 2)
            for r in csv.DictReader(fh)
            if r["series"] in spacing
        }
