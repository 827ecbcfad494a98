"""A phantom series: a head, a scanner, a pose, lesions; one slice after another up the table.

Geometry (DICOM patient coordinates, LPS, mm): the scanner's isocentre is the origin, the table
moves along +Z (feet to head), slice k's centre is at (0, 0, z0 + k x increment). With a gantry
tilt t the image plane is tilted about the left-right axis: the row direction is (1, 0, 0), the
column direction (0, cos t, -sin t), the slice normal (0, sin t, cos t) (the anterior end higher, as clinical tilts follow the skull base); ImagePositionPatient
is the centre of the first pixel. The head sits at an offset, rotated (yaw, pitch, roll); every
pixel's patient position is mapped into head coordinates and the anatomy is evaluated there,
so the geometry in the files is the geometry that was rendered (tests check it).

A slice of thickness T averages the object over T along the normal (three sub-planes at -T/3,
0 and +T/3), which is the partial volume of thick slices at the vertex and the skull base. A
pixel's lesion mask is "blood in at least half of the slab there"; a slice is positive when its
mask covers at least ``MIN_LESION_MM2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybrid_model.synth.anatomy import HOLDER as HOLDER_TISSUE
from hybrid_model.synth.anatomy import PAD, TABLE, Head
from hybrid_model.synth.config import TRAIN, Variant
from hybrid_model.synth.fields import F32, rotation
from hybrid_model.synth.lesions import Lesion, draw_lesions, paint
from hybrid_model.synth.mimics import mimic_kinds
from hybrid_model.synth.scanner import Scanner

MIN_LESION_MM2 = 8.0
SUBPLANES = (-1.0 / 3.0, 0.0, 1.0 / 3.0)


@dataclass
class Pose:
    rotation: np.ndarray
    offset: np.ndarray  # head centre in patient coordinates
    tilt: float  # degrees


@dataclass
class Slice:
    hu: np.ndarray  # reconstructed HU, float32, size x size
    mask: np.ndarray  # bool lesion mask on the same grid
    label: int
    kinds: list[str]
    instance: int  # 1-based, bottom to top
    position: tuple[float, float, float]  # ImagePositionPatient
    level: float  # 0 at the bottom of the cranial cavity's floor .. 1 at the vertex
    tissue: np.ndarray | None = None  # tissue codes of the central plane (kept on request)
    truth: np.ndarray | None = None  # the object before the scanner (kept on request)


@dataclass
class Series:
    slices: list[Slice]
    spacing: float
    slice_mm: float
    tilt_deg: float
    orientation: tuple[float, ...]  # ImageOrientationPatient
    increment: float  # table feed per slice (mm)
    meta: dict[str, Any] = field(default_factory=dict)
    head: Head | None = None  # what was rendered (for tests and figures; not written)
    pose: Pose | None = None
    scanner: Scanner | None = None
    lesions: list[Lesion] = field(default_factory=list)

    @property
    def label(self) -> int:
        return int(any(s.label for s in self.slices))


def _fits(head: Head, spacing: float, size: int, pose: Pose) -> bool:
    reach_x = head.a + head.skull + head.scalp + 4 + abs(pose.offset[0])
    reach_y = head.b + head.skull + head.scalp + 30 + abs(pose.offset[1])
    return max(reach_x, reach_y) < 0.5 * size * spacing * 0.97


def _holder(xp: np.ndarray, yp: np.ndarray, head: Head, pose: Pose, rng_state: dict):
    """Head holder (a cradle under the occiput), its foam pad and the table top: fixed to the
    scanner, not the head, so they are evaluated in patient coordinates."""
    hy = pose.offset[1]
    back = head.b + head.skull + head.scalp
    gap = rng_state["gap"]
    ex = (xp - F32(pose.offset[0])) / F32(head.a + head.skull + head.scalp + gap)
    ey = (yp - F32(hy)) / F32(back + gap)
    r = np.sqrt(ex * ex + ey * ey)
    thick = rng_state["holder_mm"] / (back + gap)
    cradle = (r > 1) & (r < 1 + thick) & (yp > F32(hy + 0.2 * back))
    pad = (r <= 1) & (r > 1 - gap / (back + gap)) & (yp > F32(hy + 0.45 * back))
    top = hy + back + gap + rng_state["holder_mm"] + rng_state["table_gap"]
    skin = 1.6
    table = ((yp > F32(top)) & (yp < F32(top + skin))) | (
        (yp > F32(top + rng_state["table_mm"])) & (yp < F32(top + rng_state["table_mm"] + skin))
    )
    core = (yp >= F32(top + skin)) & (yp <= F32(top + rng_state["table_mm"]))
    return cradle, pad, table, core


def _scatter(sec, idx: np.ndarray, shape: tuple[int, int]):
    """A Section of the points ``idx`` -> a full image Section (air elsewhere)."""
    from hybrid_model.synth.anatomy import AIR_HU, Section

    def full(values, fill, dtype):
        out = np.full(shape[0] * shape[1], fill, dtype)
        out[idx] = values
        return out.reshape(shape)

    return Section(
        full(sec.hu, AIR_HU, np.float32),
        full(sec.tissue, 0, np.uint8),
        full(sec.depth, -100.0, np.float32),
        full(sec.brain, False, bool),
        full(sec.sulcal_csf, False, bool),
        full(sec.ventricles, False, bool),
        sec.grey_hu,
    )


def make_series(
    rng: np.random.Generator,
    variant: Variant = TRAIN,
    size: int = 512,
    *,
    slice_mm: float | None = None,
    hemorrhage: bool | None = None,
    keep: bool = False,
    pick: str | None = None,
) -> Series:
    """One phantom series, skull base to vertex. ``hemorrhage`` forces a lesion or none;
    ``keep`` stores each slice's tissue map and object (for tests and figures);
    ``pick="random"`` renders a single slice (the 2-D mode): half the time through the centre
    of a lesion, else anywhere from the skull base to the vertex of a head without one."""
    if pick == "random" and hemorrhage is None:
        hemorrhage = bool(rng.random() < 0.5)
    head = Head.draw(rng, variant)
    scanner = Scanner.draw(rng, variant)
    u = rng.uniform
    tilt = float(u(*variant.tilt_deg)) if rng.random() < variant.tilt_probability else 0.0
    pose = Pose(
        rotation(u(*variant.yaw_deg), u(*variant.pitch_deg), u(*variant.roll_deg)),
        np.array([u(*variant.offset_mm), u(*variant.offset_mm) * 0.5, 0.0]),
        tilt,
    )
    spacing = float(u(*variant.spacing_mm)) * 512.0 / size
    while not _fits(head, spacing, size, pose) and spacing < 0.75 * 512 / size:
        spacing *= 1.04
    thickness = float(slice_mm or rng.choice(variant.slice_mm))
    has_lesions = rng.random() < variant.lesion_probability if hemorrhage is None else hemorrhage
    lesions: list[Lesion] = []
    if has_lesions:
        w = np.asarray(variant.lesion_count_weights, float)
        count = int(rng.choice(np.arange(1, len(w) + 1), p=w / w.sum()))
        lesions = draw_lesions(rng, head, count, variant.kind_weights)
    holder_state = {
        "gap": float(u(3, 14)),
        "holder_mm": float(u(2.5, 5)),
        "table_gap": float(u(4, 30)),
        "table_mm": float(u(20, 45)),
        "holder_hu": float(u(*variant.holder_hu)),
        "table_hu": float(u(*variant.table_hu)),
        "pad_hu": float(u(-900, -700)),
    }

    # Z range (patient) covering the head from below the posterior fossa floor to the vertex.
    s = head.c / 70.0
    bottom_h = np.array([0.0, head.geometry["y_fm"], head.z_post - u(2, 10) * s])
    top_h = np.array([0.0, 0.0, head.c + head.skull + head.scalp + u(-3, 2)])
    z_bottom = float((pose.rotation @ bottom_h)[2] + pose.offset[2])
    z_top = float((pose.rotation @ top_h)[2] + pose.offset[2])
    t = np.deg2rad(tilt)
    increment = thickness  # contiguous slices; thin ones overlap nothing
    count_slices = int(np.floor((z_top - z_bottom) / increment)) + 1
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, np.cos(t), -np.sin(t)])  # anterior up: along the skull base
    normal = np.cross(row_dir, col_dir)
    half = (size - 1) / 2.0
    grid = (np.arange(size, dtype=np.float32) - F32(half)) * F32(spacing)
    cc, rr = np.meshgrid(grid, grid)  # column offset (along row_dir), row offset (col_dir)

    chosen = range(count_slices)
    if pick == "random":
        if lesions:
            # A lesion's centre (a crescent's or a lens's lies on its surface) is where it is cut.
            target = pose.rotation @ np.asarray(lesions[0].centre, float) + pose.offset
            k = int(np.clip(round((target[2] - z_bottom) / increment), 0, count_slices - 1))
        else:
            k = int(rng.integers(int(0.05 * count_slices), max(count_slices - 1, 1)))
        chosen = range(k, k + 1)
    reach_x = head.a + head.skull + head.scalp + 8
    reach_y = head.b + head.skull + head.scalp + 45
    slices = []
    for k in chosen:
        zk = z_bottom + k * increment
        centre = np.array([0.0, 0.0, zk])
        hu_acc = np.zeros((size, size), F32)
        occupancy = np.zeros((len(lesions), size, size), F32)
        tissue = None
        for sub in SUBPLANES:
            origin = centre + sub * thickness * normal
            xp = F32(origin[0]) + cc * F32(row_dir[0]) + rr * F32(col_dir[0])
            yp = F32(origin[1]) + cc * F32(row_dir[1]) + rr * F32(col_dir[1])
            zp = F32(origin[2]) + cc * F32(row_dir[2]) + rr * F32(col_dir[2])
            # Head coordinates: H = R^T (P - offset).
            dx, dy, dz = (
                xp - F32(pose.offset[0]),
                yp - F32(pose.offset[1]),
                zp - F32(pose.offset[2]),
            )
            rm = pose.rotation.astype(F32)
            hx = dx * rm[0, 0] + dy * rm[1, 0] + dz * rm[2, 0]
            hy = dx * rm[0, 1] + dy * rm[1, 1] + dz * rm[2, 1]
            hz = dx * rm[0, 2] + dy * rm[1, 2] + dz * rm[2, 2]
            # Only points near the head are evaluated (the rest is air): a bounding cylinder.
            near = (hx / F32(reach_x)) ** 2 + ((hy + F32(12.0)) / F32(reach_y)) ** 2 < 1
            idx = np.flatnonzero(near)
            sec = head.section(hx.ravel()[idx], hy.ravel()[idx], hz.ravel()[idx])
            regions = paint(lesions, head, sec, hx.ravel()[idx], hy.ravel()[idx], hz.ravel()[idx])
            for i, region in enumerate(regions):
                occupancy[i].reshape(-1)[idx[region]] += 1
            sec = _scatter(sec, idx, (size, size))
            cradle, pad, table, core = _holder(xp, yp, head, pose, holder_state)
            free = sec.tissue == 0
            sec.hu[cradle & free] = F32(holder_state["holder_hu"])
            sec.hu[pad & free] = F32(holder_state["pad_hu"])
            sec.hu[table & free] = F32(holder_state["table_hu"])
            sec.hu[core & free] = F32(-960.0)
            hu_acc += sec.hu
            if sub == 0.0:
                sec.tissue[cradle & free] = HOLDER_TISSUE
                sec.tissue[pad & free] = PAD
                sec.tissue[(table | core) & free] = TABLE
                tissue = sec.tissue
        hu_obj = hu_acc / F32(len(SUBPLANES))
        each = occupancy / F32(len(SUBPLANES)) >= 0.5
        mask = each.any(axis=0) if lesions else np.zeros((size, size), bool)
        recon = scanner.acquire(hu_obj, spacing, thickness, rng)
        label = int(mask.sum() * spacing * spacing >= MIN_LESION_MM2)
        pixel_mm2 = spacing * spacing
        kinds = [
            lesion.kind
            for lesion, m in zip(lesions, each, strict=True)
            if label and m.sum() * pixel_mm2 >= MIN_LESION_MM2 / 2
        ]
        position = centre - half * spacing * row_dir - half * spacing * col_dir
        level = (zk - z_bottom) / max(z_top - z_bottom, 1e-3)
        slices.append(
            Slice(
                hu=recon,
                mask=np.asarray(mask if label else np.zeros_like(mask), bool),
                label=label,
                kinds=kinds,
                instance=k + 1,
                position=(float(position[0]), float(position[1]), float(position[2])),
                level=float(level),
                tissue=tissue if keep else None,
                truth=hu_obj if keep else None,
            )
        )
    meta = {
        "variant": variant.name,
        "spacing_mm": round(spacing, 4),
        "slice_mm": thickness,
        "tilt_deg": round(tilt, 2),
        "kernel": scanner.kernel,
        "noise_sigma_hu": round(scanner.sigma_hu, 2),
        "padding_hu": scanner.padding_hu,
        "atrophy": round(head.atrophy, 3),
        "mimics": mimic_kinds(head),
        "lesions": [lesion.kind for lesion in lesions],
    }
    orientation = (*row_dir, *col_dir)
    return Series(slices, spacing, thickness, tilt, tuple(float(v) for v in orientation),
                  increment, meta, head, pose, scanner, lesions)  # fmt: skip
