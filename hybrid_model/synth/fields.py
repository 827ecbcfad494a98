"""Small numeric tools of the generator: smooth 3-D random fields, capsules, smooth steps.

Every function works on arrays of head coordinates in millimetres (X left-right, Y
anterior-posterior, Z up; any shape, float32) so that whatever is drawn is one 3-D object cut by
each slice's plane: neighbouring slices, a tilted gantry or a rotated head see the same anatomy.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


class Field3D:
    """A smooth random scalar field: a sum of random plane waves, roughly unit variance.

    ``wavelength_mm``: the mean spatial period; ``components``: how many waves (more: less
    regular). Deterministic for a given generator state at construction; cheap to evaluate
    anywhere (no grid), which is what makes a field 3-D-consistent across slices.
    """

    def __init__(self, rng: np.random.Generator, wavelength_mm: float, components: int = 8):
        directions = rng.standard_normal((components, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = wavelength_mm * rng.uniform(0.7, 1.4, components)
        self.k = (2 * np.pi * directions / lengths[:, None]).astype(F32)
        self.phase = rng.uniform(0, 2 * np.pi, components).astype(F32)
        self.scale = F32(np.sqrt(2.0 / components))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.zeros(np.shape(x), F32)
        for (kx, ky, kz), ph in zip(self.k, self.phase, strict=True):
            out += np.sin(kx * x + ky * y + kz * z + ph)
        return out * self.scale


def smoothstep(x: np.ndarray, width: float) -> np.ndarray:
    """0 -> 1 across ``x`` = -width..+width (a logistic step), float32."""
    return (1.0 / (1.0 + np.exp(-np.clip(x / F32(width), -30, 30)))).astype(F32)


def ellipsoid(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    centre: tuple[float, float, float],
    axes: tuple[float, float, float],
) -> np.ndarray:
    """Normalised radius of an axis-aligned ellipsoid: < 1 inside."""
    cx, cy, cz = centre
    ax, ay, az = axes
    return np.sqrt(
        ((x - F32(cx)) / F32(ax)) ** 2
        + ((y - F32(cy)) / F32(ay)) ** 2
        + ((z - F32(cz)) / F32(az)) ** 2
    )


def capsule_distance(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, p0: np.ndarray, p1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) to the segment p0-p1 and the position along it (0..1)."""
    d = (p1 - p0).astype(F32)
    length2 = float(d @ d) or 1e-6
    t = ((x - F32(p0[0])) * d[0] + (y - F32(p0[1])) * d[1] + (z - F32(p0[2])) * d[2]) / F32(length2)
    t = np.clip(t, 0, 1)
    dx = x - (F32(p0[0]) + t * d[0])
    dy = y - (F32(p0[1]) + t * d[1])
    dz = z - (F32(p0[2]) + t * d[2])
    return np.sqrt(dx * dx + dy * dy + dz * dz), t


def tube(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    points: np.ndarray,
    radii: np.ndarray,
) -> np.ndarray:
    """Inside a tube along a polyline whose radius varies linearly between its points."""
    inside = np.zeros(np.shape(x), bool)
    if not inside.size:
        return inside
    x, y, z = (np.ravel(v) for v in (x, y, z))
    flat = inside.reshape(-1)
    for i in range(len(points) - 1):
        p0, p1 = points[i], points[i + 1]
        reach = float(max(radii[i], radii[i + 1]))
        lo = np.minimum(p0, p1) - reach
        hi = np.maximum(p0, p1) + reach
        near = np.flatnonzero(
            (z > lo[2]) & (z < hi[2]) & (y > lo[1]) & (y < hi[1]) & (x > lo[0]) & (x < hi[0])
        )
        if not near.size:
            continue
        dist, t = capsule_distance(x[near], y[near], z[near], p0, p1)
        radius = F32(radii[i]) + t * F32(radii[i + 1] - radii[i])
        flat[near[dist < radius]] = True
    return inside


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3 x 3 rotation (degrees): yaw about Z, pitch about X (chin down > 0), roll about Y."""
    cy, sy = np.cos(np.deg2rad(yaw)), np.sin(np.deg2rad(yaw))
    cp, sp = np.cos(np.deg2rad(pitch)), np.sin(np.deg2rad(pitch))
    cr, sr = np.cos(np.deg2rad(roll)), np.sin(np.deg2rad(roll))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cr, 0, sr], [0, 1, 0], [-sr, 0, cr]])
    return rz @ rx @ ry
