"""Hemorrhages with 3-D extent: each lesion is a 3-D shape cut by every slice it reaches.

The five kinds and their HU (acute blood), as in ``hybrid_model.phantoms``:
* intraparenchymal: a lobulated blob, 4-50 mm, 50-90 HU, with a hypodense oedema rim;
* subdural: a crescent over the convexity (broad, crosses sutures), 2-15 mm thick, 50-80 HU;
* epidural: a lens (biconvex, limited extent), 5-22 mm thick, 60-90 HU;
* subarachnoid: blood in the sulci, fissures and basal cisterns of a region, 40-70 HU;
* intraventricular: blood layering in the dependent (posterior, the patient lies supine) part
  of the ventricles, or a cast, 50-80 HU.
A lesion is at least ``MIN_CONTRAST_HU`` denser than the grey matter of its head: acute blood
is, and a 45 HU "bleed" in 44 HU cortex is not a finding anyone could make.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybrid_model.synth.anatomy import BONE, CALCIFICATION, GREY, WHITE, Head, Section
from hybrid_model.synth.fields import F32, Field3D

HEMORRHAGE_KINDS = ("intraparenchymal", "subdural", "epidural", "subarachnoid", "intraventricular")
HU_RANGES = {
    "intraparenchymal": (50.0, 90.0),
    "subdural": (50.0, 80.0),
    "epidural": (60.0, 90.0),
    "subarachnoid": (40.0, 70.0),
    "intraventricular": (50.0, 80.0),
}
MIN_CONTRAST_HU = 10.0


@dataclass
class Lesion:
    kind: str
    hu: float
    centre: np.ndarray  # head coordinates (mm)
    size: float  # radius (blob, ball) or angular radius (crescent, lens; radians)
    thickness: float = 0.0  # crescent and lens: maximal thickness (mm)
    frame: np.ndarray | None = None  # blob orientation
    axes: np.ndarray | None = None
    shape: Field3D | None = None
    level: float = 0.0  # intraventricular: Y above which blood layers

    def region(self, head: Head, sec: Section, x, y, z) -> np.ndarray:
        """Where this lesion is, in one cut (bool, same shape as the coordinates)."""
        cavity = sec.depth > 0
        if self.kind == "intraparenchymal":
            assert self.frame is not None and self.axes is not None and self.shape is not None
            d = np.stack([x - F32(self.centre[0]), y - F32(self.centre[1]),
                          z - F32(self.centre[2])], -1) @ self.frame.astype(F32)  # fmt: skip
            r = np.sqrt(((d / self.axes.astype(F32)) ** 2).sum(-1))
            r = r / (1 + 0.18 * self.shape(x, y, z))
            return (r < 1) & cavity & (sec.tissue != BONE)
        if self.kind in ("subdural", "epidural"):
            norm = np.sqrt(x * x + y * y + z * z) + 1e-3
            c = self.centre / np.linalg.norm(self.centre)
            cos_ang = (x * F32(c[0]) + y * F32(c[1]) + z * F32(c[2])) / norm
            ang = np.arccos(np.clip(cos_ang, -1, 1))
            inside = np.clip(1 - (ang / F32(self.size)) ** 2, 0, 1)
            power = 0.35 if self.kind == "subdural" else 0.5
            profile = F32(self.thickness) * inside**power
            return cavity & (sec.depth < profile) & (inside > 0) & (sec.tissue != BONE)
        if self.kind == "subarachnoid":
            dist = np.sqrt(
                (x - F32(self.centre[0])) ** 2
                + (y - F32(self.centre[1])) ** 2
                + (z - F32(self.centre[2])) ** 2
            )
            return sec.sulcal_csf & (dist < F32(self.size))
        # intraventricular
        dist = np.sqrt(
            (x - F32(self.centre[0])) ** 2
            + (y - F32(self.centre[1])) ** 2
            + (z - F32(self.centre[2])) ** 2
        )
        return sec.ventricles & (y > F32(self.level)) & (dist < F32(self.size))


def _brain_point(rng: np.random.Generator, head: Head, margin: float) -> np.ndarray:
    """A point of parenchyma at least ``margin`` mm under the inner table (cerebrum mostly)."""
    n = 256
    s = head.c / 70.0
    x = rng.uniform(-0.75, 0.75, n) * head.a
    y = rng.uniform(-0.8, 0.8, n) * head.b
    z = rng.uniform(head.z_mid + 5 * s, 0.75 * head.c, n)
    if rng.random() < 0.15:  # posterior fossa
        z = rng.uniform(head.z_post + 8 * s, head.geometry["tent"], n)
        y = np.abs(y)
    pts = [np.asarray(v, np.float32)[None, :] for v in (x, y, z)]
    sec = head.section(*pts)
    ok = (sec.depth[0] > margin) & np.isin(sec.tissue[0], (GREY, WHITE))
    ok &= sec.tissue[0] != CALCIFICATION
    idx = np.flatnonzero(ok)
    i = int(idx[0]) if idx.size else 0
    return np.array([x[i], y[i], z[i]], np.float64)


def _surface_direction(rng: np.random.Generator, head: Head, lateral: bool) -> np.ndarray:
    """A point on the convexity (frontal, parietal, temporal, occipital), head coordinates."""
    s = head.c / 70.0
    azimuth = rng.uniform(-np.pi, np.pi)
    if lateral:  # epidural: temporo-parietal mostly
        azimuth = rng.choice([0.0, np.pi]) + rng.uniform(-0.9, 0.9)
    z = rng.uniform(head.z_mid + 12 * s, 0.8 * head.c)
    return np.array([np.cos(azimuth) * head.a, np.sin(azimuth) * head.b, z])


def draw_lesion(rng: np.random.Generator, head: Head, kind: str) -> Lesion:
    low, high = HU_RANGES[kind]
    low = max(low, head.grey + MIN_CONTRAST_HU)
    hu = float(rng.uniform(low, max(high, low + 5)))
    if kind == "intraparenchymal":
        radius = rng.uniform(2.0, 25.0)
        centre = _brain_point(rng, head, radius + 4)
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        axes = radius * rng.uniform(0.65, 1.3, 3)
        return Lesion(kind, hu, centre, radius, frame=q, axes=axes,
                      shape=Field3D(rng, max(2 * radius, 6), 5))  # fmt: skip
    if kind == "subdural":
        return Lesion(kind, hu, _surface_direction(rng, head, False),
                      np.deg2rad(rng.uniform(25, 55)), thickness=rng.uniform(2.5, 15))  # fmt: skip
    if kind == "epidural":
        return Lesion(kind, hu, _surface_direction(rng, head, True),
                      np.deg2rad(rng.uniform(13, 28)), thickness=rng.uniform(5, 22))  # fmt: skip
    s = head.c / 70.0
    if kind == "subarachnoid":
        if rng.random() < 0.35:  # basal cisterns and Sylvian fissures (aneurysmal pattern)
            centre = np.array([rng.uniform(-10, 10), head.geometry["y2"], head.z_mid + 18 * s])
            return Lesion(kind, hu, centre, rng.uniform(25, 45))
        d = _surface_direction(rng, head, False) * 0.85
        return Lesion(kind, hu, d, rng.uniform(18, 40))
    side = rng.choice([-1.0, 1.0])
    centre = np.array([side * 15, rng.uniform(0.1, 0.45) * head.b, rng.uniform(0, 15) * s])
    level = rng.uniform(0.05, 0.4) * head.b if rng.random() < 0.7 else -head.b
    return Lesion(kind, hu, centre, rng.uniform(18, 60), level=level)


def draw_lesions(
    rng: np.random.Generator, head: Head, count: int, weights: tuple[float, ...]
) -> list[Lesion]:
    p = np.asarray(weights, float) / np.sum(weights)
    size = min(count, int(np.count_nonzero(p)))
    kinds = rng.choice(HEMORRHAGE_KINDS, size=size, replace=False, p=p)
    return [draw_lesion(rng, head, str(k)) for k in kinds]


def paint(lesions: list[Lesion], head: Head, sec: Section, x, y, z) -> list[np.ndarray]:
    """Paint lesions into ``sec.hu`` (in place); return each lesion's region (bool)."""
    regions = []
    for lesion in lesions:
        region = lesion.region(head, sec, x, y, z)
        if lesion.kind == "intraparenchymal" and region.any():
            assert lesion.axes is not None
            # A hypodense oedema rim in the parenchyma around the clot (not blood: not masked).
            grown = Lesion(**{**lesion.__dict__, "axes": lesion.axes + 3.0})
            rim = grown.region(head, sec, x, y, z) & ~region & sec.brain
            sec.hu[rim] = np.minimum(sec.hu[rim], F32(head.white - 7))
        texture = head.fields["texture"](x[region] * 1.7, y[region] * 1.7, z[region] * 1.7)
        sec.hu[region] = F32(lesion.hu) + 2.5 * texture
        regions.append(region)
    return regions
