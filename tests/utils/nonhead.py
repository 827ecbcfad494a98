"""Synthetic CT slices for the out-of-scope gate (``hybrid_model.scope``), in Hounsfield units.

Non-heads (the gate must say ``not_head``): a chest, an abdomen, a pelvis at the hip joints, a
scout (a projection, long), a blank (air) slice. Hard heads (the gate must say head): a vertex
slice (a small brain disk in a thick ring) and a skull-base slice (a ring with gaps, petrous
ridges, sinus and mastoid air, orbital fat). ``hybrid_model.phantoms.make_slice`` gives the
ordinary mid-level heads.

Each maker takes a numpy Generator and returns ``(hu float32 HxW, pixel spacing in mm)``;
the image is supine (anterior at the top, row 0). The anatomy is rough but its proportions
and densities are those the gate measures: body size, bone around the centre, air and fat.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

AIR = -1000.0

Grid = tuple[np.ndarray, np.ndarray]  # (y, x) in mm from the image centre; y grows posteriorly


def _grid(shape: tuple[int, int], spacing: float) -> Grid:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (yy - (h - 1) / 2) * spacing, (xx - (w - 1) / 2) * spacing


def _ellipse(g: Grid, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    y, x = g[0] - cy, g[1] - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = x * c + y * s, -x * s + y * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _noise(rng: np.random.Generator, hu: np.ndarray, sigma: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.standard_normal(hu.shape).astype(np.float32), (0, 0), 0.7)
    out = np.where(hu > -990, hu + noise * (sigma / 0.4), hu)
    return out.astype(np.float32)


def _table(g: Grid, hu: np.ndarray, top_mm: float) -> None:
    """A curved carbon-fibre table 3 mm thick under the body (posterior), 8 mm below it."""
    y, x = g
    curve = top_mm + 8.0 + (x / 220.0) ** 2 * 25.0
    hu[(y >= curve) & (y < curve + 3.0) & (np.abs(x) < 220)] = 150.0


def _bone(
    hu: np.ndarray, g: Grid, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0
) -> None:
    """A bone cross-section: dense cortex (700-1000 HU) around marrow (200-300 HU)."""
    hu[_ellipse(g, cy, cx, ry, rx, angle)] = 850.0
    if min(ry, rx) > 3.0:
        hu[_ellipse(g, cy, cx, ry - 1.5, rx - 1.5, angle)] = 250.0


def _vertebra(hu: np.ndarray, g: Grid, cy: float) -> None:
    """Vertebral body, canal with cord, arch and spinous process; ``cy`` is the body's centre."""
    _bone(hu, g, cy, 0.0, 15.0, 18.0)
    hu[_ellipse(g, cy + 24, 0.0, 11.0, 11.0)] = 700.0  # arch around the canal
    hu[_ellipse(g, cy + 24, 0.0, 7.0, 8.0)] = 20.0  # canal
    hu[_ellipse(g, cy + 42, 0.0, 12.0, 3.5)] = 600.0  # spinous process
    for side in (-1, 1):
        hu[_ellipse(g, cy + 26, side * 18.0, 4.0, 10.0, side * 0.4)] = 600.0  # transverse


def chest(rng: np.random.Generator, size: int = 512) -> tuple[np.ndarray, float]:
    """Body ellipse about 320 x 220 mm: fat rim, two lungs (-850), mediastinum, vertebra,
    ribs as bone dots in the chest wall, sternum; a table under it."""
    spacing = float(rng.uniform(360, 420)) / size
    g = _grid((size, size), spacing)
    rx, ry = float(rng.uniform(150, 170)), float(rng.uniform(100, 120))
    fat = float(rng.uniform(6, 22))
    hu = np.full((size, size), AIR, np.float32)
    hu[_ellipse(g, 0, 0, ry, rx)] = 40.0
    hu[_ellipse(g, 0, 0, ry - 2, rx - 2)] = -100.0
    hu[_ellipse(g, 0, 0, ry - 2 - fat, rx - 2 - fat)] = 50.0  # chest-wall muscle
    wall = 2 + fat + 10
    for side in (-1, 1):
        lung = _ellipse(g, -4, side * rx * 0.43, ry - wall - 8, rx * 0.38)
        hu[lung] = rng.uniform(-880, -820)
        for _ in range(12):  # vessels
            vy, vx = rng.uniform(-0.6, 0.6) * ry, side * rx * 0.43 + rng.uniform(-0.5, 0.5) * rx
            hu[lung & _ellipse(g, vy, vx, 2.5, 2.5)] = 40.0
    hu[_ellipse(g, -10, rx * 0.06, ry * 0.45, rx * 0.2)] = -60.0  # mediastinal fat
    hu[_ellipse(g, -18, rx * 0.1, ry * 0.35, rx * 0.15)] = 40.0  # heart
    hu[_ellipse(g, ry * 0.3, -rx * 0.08, 11.0, 11.0)] = 45.0  # aorta
    _vertebra(hu, g, ry - wall - 35)
    # Ribs: dots along an ellipse inside the chest wall, every 18-28 degrees, none at the front.
    angle = float(rng.uniform(0, 0.3))
    while angle < 2 * np.pi:
        front = abs(np.angle(np.exp(1j * (angle + np.pi / 2)))) < np.deg2rad(35)
        ay, ax = (ry - wall + 3) * np.sin(angle), (rx - wall + 3) * np.cos(angle)
        if front:
            hu[_ellipse(g, ay, ax, 3.0, 8.0, angle + np.pi / 2)] = 110.0  # costal cartilage
        else:
            _bone(hu, g, ay, ax, 4.5, 9.0, angle + np.pi / 2)
        angle += float(np.deg2rad(rng.uniform(18, 28)))
    _bone(hu, g, -(ry - wall + 3), 0.0, 6.0, 13.0)  # sternum
    _table(g, hu, ry)
    return _noise(rng, hu, float(rng.uniform(6, 14))), spacing


def abdomen(rng: np.random.Generator, size: int = 512) -> tuple[np.ndarray, float]:
    """A large soft-tissue ellipse with a fat rim (-100), organs, bowel (some gas), mesenteric
    fat, psoas and a vertebra; sometimes the lowest ribs at the sides."""
    spacing = float(rng.uniform(380, 460)) / size
    g = _grid((size, size), spacing)
    rx, ry = float(rng.uniform(150, 185)), float(rng.uniform(105, 135))
    fat = float(rng.uniform(10, 40))
    hu = np.full((size, size), AIR, np.float32)
    hu[_ellipse(g, 0, 0, ry, rx)] = 40.0
    hu[_ellipse(g, 0, 0, ry - 2, rx - 2)] = -100.0
    hu[_ellipse(g, 0, 0, ry - 2 - fat, rx - 2 - fat)] = 50.0  # abdominal wall
    cavity_ry, cavity_rx = ry - fat - 10, rx - fat - 10
    hu[_ellipse(g, 0, 0, cavity_ry, cavity_rx)] = -90.0  # mesenteric and retroperitoneal fat
    hu[_ellipse(g, -10, -cavity_rx * 0.45, cavity_ry * 0.6, cavity_rx * 0.45)] = 60.0  # liver
    hu[_ellipse(g, 10, cavity_rx * 0.6, cavity_ry * 0.35, cavity_rx * 0.25)] = 50.0  # spleen
    for side in (-1, 1):
        hu[_ellipse(g, cavity_ry * 0.45, side * 55.0, 25.0, 18.0, side * 0.5)] = 35.0  # kidney
        hu[_ellipse(g, cavity_ry * 0.55, side * 28.0, 15.0, 10.0)] = 50.0  # psoas
    for _ in range(int(rng.integers(10, 20))):  # bowel loops
        by = float(rng.uniform(-0.7, 0.4)) * cavity_ry
        bx = float(rng.uniform(-0.5, 0.8)) * cavity_rx
        r = float(rng.uniform(8, 18))
        hu[_ellipse(g, by, bx, r, r)] = 40.0
        hu[_ellipse(g, by, bx, r - 2.5, r - 2.5)] = -950.0 if rng.random() < 0.35 else 15.0
    _vertebra(hu, g, cavity_ry * 0.55)
    if rng.random() < 0.5:
        for side in (-1, 1):
            for k in range(int(rng.integers(1, 4))):
                a = np.deg2rad(20 + 25 * k)
                ay, ax = cavity_ry * np.sin(a) + 5, side * (cavity_rx + 4) * np.cos(a)
                _bone(hu, g, ay, ax, 4.5, 8.0, a)
    _table(g, hu, ry)
    return _noise(rng, hu, float(rng.uniform(6, 14))), spacing


def pelvis(rng: np.random.Generator, size: int = 512) -> tuple[np.ndarray, float]:
    """At the hip joints, body about 350 x 240 mm: femoral heads (centres at about 55 % of the
    half-width) in their acetabula, pubic rami to the symphysis in front, ischia and the coccyx
    behind (a nearly closed bony ring), bladder and rectum in pelvic fat, glutei outside."""
    spacing = float(rng.uniform(400, 480)) / size
    g = _grid((size, size), spacing)
    rx, ry = float(rng.uniform(160, 195)), float(rng.uniform(105, 130))
    fat = float(rng.uniform(12, 40))
    hu = np.full((size, size), AIR, np.float32)
    hu[_ellipse(g, 0, 0, ry, rx)] = 40.0
    hu[_ellipse(g, 0, 0, ry - 2, rx - 2)] = -100.0
    hu[_ellipse(g, 0, 0, ry - 2 - fat, rx - 2 - fat)] = 50.0  # glutei, hip and thigh muscle
    head_x = 0.55 * rx
    hu[_ellipse(g, 0, 0, 0.6 * ry, head_x - 20)] = -90.0  # pelvic fat
    hu[_ellipse(g, -0.25 * ry, 0, 0.3 * ry, 0.3 * head_x)] = 10.0  # bladder
    hu[_ellipse(g, 0.35 * ry, 0, 14, 14)] = 40.0  # rectum
    hu[_ellipse(g, 0.35 * ry, 0, 8, 8)] = -950.0
    for side in (-1, 1):
        x0 = side * head_x
        hu[_ellipse(g, 0, x0 - side * 10, 30, 16)] = 650.0  # acetabulum (medial wall)
        _bone(hu, g, 0, x0, 23, 23)  # femoral head
        _bone(hu, g, 5, x0 + side * 45, 18, 14)  # greater trochanter
        # superior pubic ramus, from the acetabulum to the symphysis
        mid_y, mid_x = -0.32 * ry, side * head_x * 0.5
        hu[_ellipse(g, mid_y, mid_x, 6, head_x * 0.55, -side * 0.55)] = 600.0
        hu[_ellipse(g, 0.32 * ry, side * head_x * 0.75, 7, 20, side * 0.7)] = 600.0  # ischium
    hu[_ellipse(g, 0.6 * ry, 0, 9, 16)] = 450.0  # coccyx
    _table(g, hu, ry)
    return _noise(rng, hu, float(rng.uniform(6, 14))), spacing


def scout(rng: np.random.Generator, rows: int = 1024, cols: int = 512) -> tuple[np.ndarray, float]:
    """A frontal projection from the head to the pelvis: values grow with the body's thickness,
    bright skull and spine, darker lungs (no HU meaning, as in a real localizer)."""
    spacing = float(rng.uniform(0.9, 1.1))
    y, x = _grid((rows, cols), spacing)
    top = -rows * spacing / 2
    head_cy = top + 120
    thickness = np.zeros((rows, cols), np.float32)
    head = (x / 75) ** 2 + ((y - head_cy) / 95) ** 2
    thickness = np.where(head < 1, 180 * np.sqrt(np.clip(1 - head, 0, 1)), thickness)
    neck = (y > head_cy + 80) & (y < head_cy + 150) & (np.abs(x) < 55)
    thickness[neck] = 110
    half_width = np.clip(150 + 0.2 * (y - head_cy - 150), 150, 200)
    trunk = (y >= head_cy + 150) & (np.abs(x) < half_width)
    thickness = np.where(trunk, 220 * np.sqrt(np.clip(1 - (x / half_width) ** 2, 0, 1)), thickness)
    value = -1024 + 8.0 * thickness
    lungs = trunk & (y > head_cy + 200) & (y < head_cy + 420) & (np.abs(x) > 20) & (np.abs(x) < 130)
    value[lungs] -= 600
    value[(np.abs(x) < 12) & (y > head_cy + 80)] += 500  # spine
    value[(head > 0.85) & (head < 1)] += 900  # skull in projection
    value[thickness == 0] = -1024
    return _noise(rng, value.astype(np.float32), 20.0), spacing


def blank(rng: np.random.Generator, size: int = 512) -> tuple[np.ndarray, float]:
    """Air everywhere (noise of a few HU), and the table alone."""
    spacing = float(rng.uniform(0.4, 0.6))
    hu = np.full((size, size), AIR, np.float32) + rng.normal(0, 3, (size, size)).astype(np.float32)
    _table(_grid((size, size), spacing), hu, 60.0)
    return hu, spacing


def vertex(rng: np.random.Generator, size: int = 512) -> tuple[np.ndarray, float]:
    """Near the top of the head: a small brain disk (semi-axes 20-50 mm) in a thick skull
    ring (7-12 mm), scalp around it."""
    spacing = float(rng.uniform(220, 260)) / size
    g = _grid((size, size), spacing)
    brain_rx = float(rng.uniform(20, 50))
    brain_ry = brain_rx * float(rng.uniform(1.05, 1.25))
    skull, scalp = float(rng.uniform(7, 12)), float(rng.uniform(4, 7))
    angle = float(rng.uniform(-0.4, 0.4))
    cy, cx = (float(v) for v in rng.uniform(-20, 20, 2))
    hu = np.full((size, size), AIR, np.float32)
    out = skull + scalp
    hu[_ellipse(g, cy, cx, brain_ry + out, brain_rx + out, angle)] = 35.0
    hu[_ellipse(g, cy, cx, brain_ry + skull, brain_rx + skull, angle)] = 1300.0
    hu[_ellipse(g, cy, cx, brain_ry + skull * 0.7, brain_rx + skull * 0.7, angle)] = 800.0
    hu[_ellipse(g, cy, cx, brain_ry + skull * 0.3, brain_rx + skull * 0.3, angle)] = 1300.0
    hu[_ellipse(g, cy, cx, brain_ry, brain_rx, angle)] = 8.0  # CSF over the convexity
    hu[_ellipse(g, cy, cx, brain_ry - 1.5, brain_rx - 1.5, angle)] = float(rng.uniform(28, 40))
    falx = np.abs((g[1] - cx) * np.cos(angle) + (g[0] - cy) * np.sin(angle)) < 1.0
    hu[falx & _ellipse(g, cy, cx, brain_ry, brain_rx, angle)] = 60.0
    return _noise(rng, hu, float(rng.uniform(3, 10))), spacing


def skull_base(rng: np.random.Generator, size: int = 512) -> tuple[np.ndarray, float]:
    """Through the middle and posterior fossae: a skull ring with gaps (orbits in front, the
    foramen magnum region behind), frontal/ethmoid and sphenoid sinus air, petrous ridges with
    mastoid air cells, orbital fat, temporal lobes and cerebellum."""
    spacing = float(rng.uniform(220, 260)) / size
    g = _grid((size, size), spacing)
    rx = float(rng.uniform(62, 75))
    ry = rx * float(rng.uniform(1.2, 1.35))
    skull, scalp = float(rng.uniform(5, 8)), float(rng.uniform(4, 8))
    hu = np.full((size, size), AIR, np.float32)
    hu[_ellipse(g, 0, 0, ry + skull + scalp, rx + skull + scalp)] = 40.0
    hu[_ellipse(g, 0, 0, ry + skull, rx + skull)] = 1100.0
    hu[_ellipse(g, 0, 0, ry, rx)] = float(rng.uniform(28, 40))  # brain
    phi = np.arctan2(g[0] / ry, g[1] / rx)  # -pi/2: anterior
    ring = _ellipse(g, 0, 0, ry + skull, rx + skull) & ~_ellipse(g, 0, 0, ry, rx)
    for centre, half in ((-np.pi / 2 - 0.45, 0.16), (-np.pi / 2 + 0.45, 0.16)):  # orbits
        gap = ring & (np.abs(np.angle(np.exp(1j * (phi - centre)))) < half)
        hu[gap] = 40.0
        oy, ox = -(ry - 6) * np.cos(0.45), np.sign(centre + np.pi / 2) * rx * 0.45
        hu[_ellipse(g, oy, ox, 13, 10)] = -80.0  # orbital fat
    if rng.random() < 0.6:  # posterior gap (the foramen magnum region)
        hu[ring & (np.abs(np.angle(np.exp(1j * (phi - np.pi / 2)))) < 0.18)] = 40.0
    hu[_ellipse(g, -ry * 0.75, 0, ry * 0.18, rx * 0.3)] = 1000.0  # frontal/ethmoid block
    for dx in (-0.12, 0.12):
        hu[_ellipse(g, -ry * 0.78, dx * rx, ry * 0.1, rx * 0.1)] = -950.0  # sinus air
    hu[_ellipse(g, -ry * 0.25, 0, 14, 16)] = 900.0  # sphenoid
    hu[_ellipse(g, -ry * 0.25, 0, 9, 11)] = -950.0  # sphenoid sinus
    hu[_ellipse(g, ry * 0.05, 0, 16, 5)] = 900.0  # clivus
    for side in (-1, 1):
        hu[_ellipse(g, ry * 0.1, side * rx * 0.55, 6, rx * 0.45, side * 0.6)] = 1300.0  # petrous
        for _ in range(int(rng.integers(4, 10))):  # mastoid air cells
            my, mx = ry * 0.35 + rng.uniform(-8, 8), side * (rx * 0.92 + rng.uniform(-6, 4))
            hu[_ellipse(g, my, mx, 6, 6)] = 900.0
            hu[_ellipse(g, my, mx, 3, 3)] = -950.0
        hu[_ellipse(g, -ry * 0.2, side * rx * 0.6, ry * 0.25, rx * 0.28)] = 38.0  # temporal
    hu[_ellipse(g, ry * 0.55, 0, ry * 0.35, rx * 0.7)] = 34.0  # cerebellum
    hu[_ellipse(g, ry * 0.25, 0, 10, 12)] = 30.0  # brainstem
    hu[_ellipse(g, ry * 0.4, 0, 4, 6)] = 5.0  # fourth ventricle
    return _noise(rng, hu, float(rng.uniform(3, 10))), spacing


NON_HEADS: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, float]]] = {
    "chest": chest,
    "abdomen": abdomen,
    "pelvis": pelvis,
    "scout": scout,
    "blank": blank,
}
HARD_HEADS: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, float]]] = {
    "vertex": vertex,
    "skull_base": skull_base,
}


def dicom_bytes(hu: np.ndarray, spacing: float | None, **attrs: object) -> bytes:
    """A CT DICOM of ``hu`` (int16 stored = HU + 1024, RescaleIntercept -1024), PixelSpacing
    ``spacing`` (none when None), then ``attrs`` (ImageType, BodyPartExamined, ...)."""
    import io

    from hybrid_model.ctdicom import ct_dataset

    ds = ct_dataset(hu, spacing=spacing)
    ds.PatientName, ds.PatientID = "PHANTOM^NONHEAD", "PHANTOM-NONHEAD"
    for key, value in attrs.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def windowed(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU -> grey in [0, 1] through a window (what an 8-bit export holds, before rounding)."""
    return np.clip((hu - (level - width / 2)) / width, 0.0, 1.0).astype(np.float32)


def png8(hu: np.ndarray, level: float, width: float) -> bytes:
    """An 8-bit greyscale PNG of ``hu`` in the window ``level``/``width``."""
    ok, buf = cv2.imencode(".png", np.round(windowed(hu, level, width) * 255).astype(np.uint8))
    assert ok
    return buf.tobytes()
