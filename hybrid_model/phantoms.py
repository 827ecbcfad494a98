"""Synthetic head-CT phantoms in Hounsfield units, with lesion masks, for training and tests.

Each slice: air (-1000 HU) around an elliptical head of varying size, position, rotation and
pixel spacing; scalp (~30 HU); a skull ring (700-1500 HU, dense tables and a lower diploe,
thickness varying with angle); brain parenchyma (grey matter 32-45 HU, white matter 20-30 HU,
smooth texture, Gaussian noise sigma 3-10 HU); CSF (0-15 HU) in ventricles, sulci, the
interhemispheric fissure and a thin rim under the inner table. About half the slices carry one or
more hemorrhages: intraparenchymal (50-90 HU, 3-40 mm), subdural crescent (50-80), epidural lens
(60-90), subarachnoid blood in a group of sulci (40-70) and intraventricular (50-80). A lesion is
always at least 12 HU denser than the grey matter of its slice so that it is visible at all (a
50 HU bleed in 45 HU cortex under 10 HU noise is not, for a reader or a network).

Output formats (``generate``):
* ``dcm``: CT DICOM, int16 stored values = HU + 1024 with RescaleIntercept -1024, slope 1;
  invented, non-identifying headers (PatientName ``PHANTOM^<n>``, PatientID ``PHANTOM-0001``,
  UIDs from ``pydicom.uid.generate_uid``).
* ``png``: 16-bit greyscale PNG of the *brain window* (0..80 HU mapped to 0..65535). A PNG carries
  no HU and ``preprocess.decode`` scales it by 65535 and replicates it, so a PNG phantom looks
  like an already windowed export, which is what real PNG/JPEG slices are.
* ``mixed``: alternate the two (even index DICOM, odd PNG).
Plus ``labels.csv`` (``id,hemorrhage``: the layout of Kaggle "Head CT - hemorrhage") and
``masks/<id>.png`` (uint8 0/255 lesion mask, native pixel grid) for every positive slice.
These are phantoms: weights trained on them are not clinically valid.
"""

from __future__ import annotations

import csv
import datetime as _dt
from pathlib import Path
from typing import Any

import cv2
import numpy as np

HEMORRHAGE_KINDS = ("intraparenchymal", "subdural", "epidural", "subarachnoid", "intraventricular")
AIR_HU = -1000.0
MIN_CONTRAST_HU = 12.0


def _smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Unit-variance smooth random field (Gaussian-filtered white noise).

    Drawn on a coarser grid and upsampled when the blur is wide: same look, a fraction of the cost.
    """
    factor = int(max(1, min(4, sigma_px // 2)))
    small = max(8, size // factor)
    field: np.ndarray = rng.standard_normal((small, small), dtype=np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigma_px / factor)
    if small != size:
        field = cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)
    return field / (field.std() + 1e-6)


class _Head:
    """Geometry of one slice: polar-like coordinates of the head in millimetres."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.size = size
        self.a = rng.uniform(62, 78)  # inner-table semi-axis, left-right (mm)
        self.b = self.a * rng.uniform(1.12, 1.3)  # anterior-posterior
        self.skull = rng.uniform(4.0, 8.0)
        self.scalp = rng.uniform(3.0, 6.0)
        outer = self.b + self.skull * 1.6 + self.scalp
        self.spacing = max(rng.uniform(0.8, 1.1) * 256.0 / size, outer / (0.46 * size))
        margin = 0.5 * size - outer / self.spacing - 2
        # Python floats, not numpy float64 scalars, so the float32 grids stay float32 (NEP 50).
        cy, cx = (float(c) for c in rng.uniform(-margin, margin, 2)) if margin > 0 else (0.0, 0.0)
        theta = float(np.deg2rad(rng.uniform(-25, 25)))
        cos_t, sin_t = float(np.cos(theta)), float(np.sin(theta))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        y = (yy - (size - 1) / 2 - cy) * self.spacing
        x = (xx - (size - 1) / 2 - cx) * self.spacing
        self.u = x * cos_t + y * sin_t  # left-right, mm
        self.v = -x * sin_t + y * cos_t  # anterior-posterior, mm
        self.phi = np.arctan2(self.v / self.b, self.u / self.a)
        p1, p2 = (float(p) for p in rng.uniform(0, 2 * np.pi, 2))
        wobble = 1 + 0.025 * np.sin(2 * self.phi + p1) + 0.015 * np.sin(3 * self.phi + p2)
        self.rho = np.sqrt((self.u / self.a) ** 2 + (self.v / self.b) ** 2) / wobble
        self.mean_r = 0.5 * (self.a + self.b)
        # Approximate depth below the inner table in mm (negative outside the brain).
        self.depth = (1.0 - self.rho) * self.mean_r
        self.brain = self.rho < 1.0


def _angular_window(phi: np.ndarray, centre: float, half_span: float) -> np.ndarray:
    """Position within an angular span, -1..1 inside, |x|>1 outside (wraps around)."""
    d = np.mod(phi - np.float32(centre) + np.float32(np.pi), np.float32(2 * np.pi)) - np.float32(
        np.pi
    )
    return d / np.float32(half_span)


def _anatomy(rng: np.random.Generator, head: _Head) -> tuple[np.ndarray, dict[str, Any]]:
    size = head.size
    hu = np.full((size, size), AIR_HU, dtype=np.float32)
    t_skull = head.skull * (1 + 0.3 * np.sin(2 * head.phi + rng.uniform(0, 6.3)))
    skull_depth = -head.depth  # mm outside the inner table
    in_skull = (skull_depth >= 0) & (skull_depth < t_skull)
    in_scalp = (skull_depth >= t_skull) & (skull_depth < t_skull + head.scalp)
    hu[in_scalp] = rng.uniform(20, 45)
    table = rng.uniform(1100, 1500)
    diploe = rng.uniform(700, 950)
    frac = skull_depth[in_skull] / np.maximum(t_skull[in_skull], 1e-3)
    hu[in_skull] = diploe + (table - diploe) * np.abs(2 * frac - 1) ** 0.7

    grey = rng.uniform(32, 45)
    white = rng.uniform(20, 30)
    csf = rng.uniform(0, 15)
    ribbon = rng.uniform(6, 11) * (1 + 0.35 * _smooth_noise(rng, size, 6 / head.spacing))
    brain_hu = np.where(head.depth < ribbon, grey, white).astype(np.float32)
    brain_hu += 2.0 * _smooth_noise(rng, size, 3 / head.spacing)
    n_sulci = int(rng.integers(14, 24))
    bend = 0.6 * _smooth_noise(rng, size, 8 / head.spacing)
    sulcus_depth = rng.uniform(8, 16)
    sulci = (np.abs(np.sin(n_sulci * head.phi / 2 + bend)) < 0.12) & (head.depth < sulcus_depth)
    sulci |= head.depth < rng.uniform(0.6, 1.4)  # thin CSF rim under the inner table
    fissure = (np.abs(head.u) < 0.9) & (np.abs(head.v) > head.b * rng.uniform(0.25, 0.4))
    ventricles = []
    off = rng.uniform(5, 10)
    va, vb = rng.uniform(3.5, 8), rng.uniform(14, 26)
    dv = rng.uniform(-8, 4)
    for side in (-1, 1):
        tilt = side * float(np.deg2rad(rng.uniform(5, 20)))
        du, dvv = head.u - side * off, head.v - dv
        cos_t, sin_t = float(np.cos(tilt)), float(np.sin(tilt))
        ru = du * cos_t + dvv * sin_t
        rv = -du * sin_t + dvv * cos_t
        ventricles.append((ru / va) ** 2 + (rv / vb) ** 2 < 1)
    csf_mask = (sulci | fissure | ventricles[0] | ventricles[1]) & head.brain
    brain_hu[csf_mask] = csf
    hu[head.brain] = brain_hu[head.brain]
    parts = {"grey": grey, "sulci": sulci & head.brain, "ventricles": ventricles}
    return hu, parts


def _lesion_hu(rng: np.random.Generator, low: float, high: float, grey: float) -> float:
    low = max(low, grey + MIN_CONTRAST_HU)
    return float(rng.uniform(low, max(high, low + 5)))


def _hemorrhage(rng, head: _Head, parts, kind: str) -> tuple[np.ndarray, float]:
    grey = parts["grey"]
    if kind == "intraparenchymal":
        diameter = rng.uniform(3, 40)
        for _ in range(20):  # centre inside the brain, clear of the inner table
            cu, cv_ = rng.uniform(-head.a, head.a), rng.uniform(-head.b, head.b)
            if np.hypot(cu / head.a, cv_ / head.b) < 1 - (diameter / 2 + 6) / head.mean_r:
                break
        else:
            cu, cv_ = 0.0, 0.0
        ang = np.arctan2(head.v - cv_, head.u - cu)
        p = [float(v) for v in rng.uniform(0, 6.3, 2)]
        radius = diameter / 2 * (1 + 0.18 * np.sin(3 * ang + p[0]) + 0.1 * np.sin(5 * ang + p[1]))
        mask = np.hypot(head.u - cu, head.v - cv_) < radius
        return mask & head.brain, _lesion_hu(rng, 50, 90, grey)
    if kind in ("subdural", "epidural"):
        sub = kind == "subdural"
        half = float(np.deg2rad(rng.uniform(25, 60) if sub else rng.uniform(14, 30)))
        pos = _angular_window(head.phi, rng.uniform(-np.pi, np.pi), half)
        inside = np.clip(1 - pos**2, 0, 1)
        thick = rng.uniform(3, 14) if sub else rng.uniform(8, 20)
        profile = thick * (inside**0.35 if sub else np.sqrt(inside))  # crescent vs lens
        mask = (head.depth >= 0) & (head.depth < profile)
        lo, hi = (50, 80) if sub else (60, 90)
        return mask & head.brain, _lesion_hu(rng, lo, hi, grey)
    if kind == "subarachnoid":
        pos = _angular_window(
            head.phi, rng.uniform(-np.pi, np.pi), float(np.deg2rad(rng.uniform(25, 55)))
        )
        sulci = cv2.dilate(parts["sulci"].astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
        mask = sulci & (np.abs(pos) < 1) & (head.depth > 0.3)
        return mask & head.brain, _lesion_hu(rng, 40, 70, grey)
    vent = parts["ventricles"][int(rng.integers(0, 2))]
    level = rng.uniform(-0.4, 0.6)  # blood layers dependently (posterior part, larger v)
    rows = head.v[vent]
    cut = np.quantile(rows, np.clip(level, 0, 0.9)) if rows.size else 0.0
    mask = vent & (head.v >= cut)
    return mask & head.brain, _lesion_hu(rng, 50, 80, grey)


def make_slice(
    rng: np.random.Generator, size: int = 256, *, hemorrhage: bool | None = None
) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """One phantom slice: (HU float32 HxW, lesion mask bool HxW, label 0/1, metadata)."""
    head = _Head(rng, size)
    hu, parts = _anatomy(rng, head)
    label = bool(rng.random() < 0.5) if hemorrhage is None else bool(hemorrhage)
    mask = np.zeros((size, size), dtype=bool)
    kinds: list[str] = []
    if label:
        n = int(rng.choice([1, 1, 1, 2, 2, 3]))
        for kind in rng.choice(HEMORRHAGE_KINDS, size=n, replace=False):
            lesion, value = _hemorrhage(rng, head, parts, str(kind))
            if lesion.sum() < 4:
                continue
            texture = value + 3.0 * _smooth_noise(rng, size, 1.5)
            hu[lesion] = texture[lesion]
            mask |= lesion
            kinds.append(str(kind))
        if not kinds:  # every lesion fell off the brain: fall back to a visible IPH
            lesion, value = _hemorrhage(rng, head, parts, "intraparenchymal")
            hu[lesion] = value
            mask |= lesion
            kinds.append("intraparenchymal")
    sigma = rng.uniform(3, 10)
    noise = rng.standard_normal((size, size), dtype=np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 0.6) * (sigma / 0.47)  # correlated like CT noise
    hu = np.where(hu > AIR_HU, hu + noise, hu).astype(np.float32)
    meta = {
        "spacing_mm": round(float(head.spacing), 4),
        "noise_sigma_hu": round(float(sigma), 2),
        "kinds": kinds,
        "lesion_pixels": int(mask.sum()),
    }
    return hu, mask, int(label and mask.any()), meta


def _brain_window_u16(hu: np.ndarray) -> np.ndarray:
    from hybrid_model.preprocess import WINDOWS

    _, level, width = WINDOWS[0]
    scaled = np.clip((hu - (level - width / 2)) / width, 0, 1) * 65535.0
    return np.round(scaled).astype(np.uint16)


def write_dicom(path: Path, hu: np.ndarray, index: int, spacing: float, seed: int) -> None:
    """A single-frame CT DICOM: int16 stored = HU + 1024, RescaleIntercept -1024."""
    from pydicom.uid import generate_uid

    from hybrid_model.ctdicom import ct_dataset

    ds = ct_dataset(hu, spacing=round(spacing, 4))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = f"PHANTOM^{index}"
    ds.PatientID = f"PHANTOM-{index:04d}"
    ds.StudyDescription = f"hemoscan synthetic phantom (seed {seed})"
    ds.StudyDate = _dt.date(2000, 1, 1).strftime("%Y%m%d")
    ds.Manufacturer = "hemoscan phantom generator"
    ds.InstanceNumber = index
    ds.SliceThickness = 5
    ds.WindowCenter, ds.WindowWidth = 40, 80
    ds.save_as(path, enforce_file_format=True)


def generate(
    out_dir: str | Path, count: int, seed: int, fmt: str = "dcm", size: int = 256
) -> list[dict[str, Any]]:
    """Write ``count`` phantom slices, ``labels.csv`` and ``masks/`` into ``out_dir``.

    Returns one record per slice: id, file, hemorrhage, mask (or None) and the slice metadata.
    The same (count, seed, fmt, size) always gives the same pixels.
    """
    if fmt not in ("dcm", "png", "mixed"):
        raise ValueError(f"fmt must be dcm, png or mixed, not {fmt!r}")
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        hu, mask, label, meta = make_slice(rng, size)
        sid = f"phantom_{i:05d}"
        kind = fmt if fmt != "mixed" else ("dcm" if i % 2 == 0 else "png")
        file = out / f"{sid}.{kind}"
        if kind == "dcm":
            write_dicom(file, hu, i + 1, meta["spacing_mm"], seed)
        else:
            cv2.imwrite(str(file), _brain_window_u16(hu))
        mask_file = None
        if label:
            mask_file = out / "masks" / f"{sid}.png"
            cv2.imwrite(str(mask_file), mask.astype(np.uint8) * 255)
        records.append(
            {
                "id": sid,
                "file": str(file),
                "hemorrhage": label,
                "mask": mask_file and str(mask_file),
                **meta,
            }
        )
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "hemorrhage"])
        writer.writerows((r["id"], r["hemorrhage"]) for r in records)
    return records
