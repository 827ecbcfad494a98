"""Is this slice a head? The out-of-scope gate (failure reason ``not_head``).

The network was trained on axial head CT only; a chest, abdomen, pelvis, spine or scout slice
gets a confident but meaningless score. The gate decides from the image (DICOM BodyPartExamined
is often missing or wrong: only a hint that relaxes the rules a little), in two forms:

* ``check_hu``: Hounsfield units (DICOM, 16-bit PNGs read as HU + 1024), with the pixel spacing
  when it is known;
* ``check_grey``: a windowed grey image in [0, 1] (8-bit PNG/JPEG, 16-bit windowed PNG): the
  window is unknown, so only relative structure is used.

A head slice, from the skull base to the vertex, is one body (the table and the head holder are
thin and removed), a head's size when the spacing is known, not cut by the image's edge (a head
scan holds the whole head), with a bone shell close under the skin in most directions from its
centre (the skull; at the skull base with gaps: foramen magnum, orbits) and, inside that shell,
mostly soft tissue (brain, CSF, blood), little air (sinuses, mastoids) and little fat. A chest
has lungs inside its ribs, an abdomen fat and no shell, a pelvis bone deep under thick muscle, a
spine slice a narrow field of view cut out of a larger body.

How: at about 128 pixels on the long side, 64 rays from the body's centroid (and from two points
along its long axis: at the skull base the centroid falls on the petrous bones) find the
outermost bone in each direction. A ray is skull-like when that bone lies near the skin and its
layer is thin (or, at the vertex, a thick tangential ring around the centre). The polygon
through the skull-like rays' outermost bone, bridging the others by interpolation, is the shell
whose content is measured. ``Scope.figures`` holds every measurement, ``Scope.reason`` names the
rule that decided. docs/decoding.md, "Out-of-scope gate", has the figures measured on real files
and synthetic sets, and the known limits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

WORK_SIDE = 128  # working resolution: the long side, in pixels (a few ms per slice)
MIN_SIDE = 32  # below this an image cannot show a head's structure
MAX_ASPECT = 1.8  # rows / columns (or the inverse): an axial head slice is near square
N_RAYS = 64
_THETA = np.linspace(0.0, 2 * np.pi, N_RAYS, endpoint=False, dtype=np.float32)
_SIN, _COS = np.sin(_THETA), np.cos(_THETA)
_RAY = np.arange(N_RAYS)

# Hounsfield units.
BODY_HU = -500.0  # above: the body (and the table, removed as thin)
BONE_HU = 250.0  # above: bone (contrast-enhanced vessels and organs stay below, mostly)
SOFT_HU = (-30.0, 130.0)  # brain, CSF, blood, with noise
FAT_HU = (-200.0, -30.0)
AIR_HU = -400.0  # below, inside the shell: air (sinuses, mastoids; lungs, bowel gas)
BONE_SHARE = 0.25  # a working pixel is bone when a quarter of its full-resolution pixels are

# Grey levels (a window in [0, 1], its level and width unknown).
DARK_GREY = 0.06  # at or below: air (and, in a brain window, fat and CSF near 0 HU)
PLATEAU_GREY = 0.03  # within this of the maximum: a saturated pixel
WHITE_GREY, MIN_WHITE_SHARE = 0.98, 0.05  # 5 % of the body near white: the window clips
MID_TISSUE = 0.4  # soft tissue this high: a narrow window (a bone window puts it near 0.3)
SPREAD_SHARE = 0.35  # bone window: bone above tissue + this x (top - tissue)

# Bone components.
MIN_BONE_PX = 4  # smaller ones are noise (on a 128-pixel grid; scaled by area below it)
MIN_BONE_SHARE = 0.02  # and so are those under this share of the largest (a skull is one piece)

# Rays: shares of the ray's length inside the body.
MAX_DEPTH = 0.35  # the outermost bone at most this far in from the body's edge
MAX_LAYER = 0.4  # a bone layer at most this thick
MAX_DEPTH_LAYER = 0.45  # and both together at most this;
VERTEX_DEPTH, VERTEX_LAYER = 0.25, 0.7  # or a thick tangential ring right under the skin

# The rules, in the order they are applied.
MIN_BODY_CM2, MIN_BODY_FRACTION = 20.0, 0.02  # a body at all (cm² or share of the image)
MAX_CUT_SHARE = 0.3  # of the body's outline on the image's edge
BODY_EXTENT_MM = (60.0, 260.0)  # the body's long side: a vertex slice to a large adult's head
MIN_SKULL_RAYS = 0.5  # share of skull-like rays
MIN_SHELL_OF_BODY = 0.45  # shell area / body area
MIN_SOFT_FRACTION = 0.5  # soft tissue / the shell's non-bone area
MAX_AIR_FRACTION = 0.3  # air / the shell's non-bone area (grey: dark, so CSF in a brain window)
MAX_FAT_FRACTION = 0.2  # fat / the same (HU only: a window shows fat black or grey)
MIN_SOFT_CM2 = 5.0  # soft tissue inside the shell (spacing known): a 2.5 cm brain disk

# A head hint (BodyPartExamined) relaxes the shell rules, for a borderline skull base or vertex
# (docs/decoding.md: at 0.75 the lowest skull-base slices of CT phantom series were refused).
HEAD_PARTS = ("HEAD", "BRAIN", "SKULL", "CRANIUM", "CEREBRUM")
HINT_RELAX = 0.6


@dataclass(frozen=True)
class Scope:
    """The gate's answer: ``head``, the rule that decided (``reason``) and the measurements."""

    head: bool
    reason: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Masks:
    """Working-grid masks, the same for both entry points (``fat`` only from HU)."""

    body: np.ndarray
    bone: np.ndarray
    soft: np.ndarray
    air: np.ndarray
    fat: np.ndarray | None
    px_mm: float | None


def check_hu(
    hu: np.ndarray,
    spacing_mm: float | Sequence[float] | None = None,
    *,
    body_part: str | None = None,
    image_type: Sequence[str] = (),
) -> Scope:
    """Head or not, from finite HxW Hounsfield units.

    Args:
        hu: the slice in HU.
        spacing_mm: PixelSpacing (one value or row, column), or None when unknown.
        body_part: DICOM BodyPartExamined, a hint (HEAD relaxes the shell rules).
        image_type: DICOM ImageType; LOCALIZER is a scout, not head.
    """
    early = _precheck(hu, image_type)
    if early is not None:
        return early
    small = _shrink(hu)
    px_mm = _px_mm(spacing_mm, hu.shape, small.shape)
    body = _body(small > BODY_HU, px_mm)
    masks = _Masks(
        body=body,
        bone=_bone_full(hu, BONE_HU, small.shape, body),
        soft=(small >= SOFT_HU[0]) & (small <= SOFT_HU[1]),
        air=small < AIR_HU,
        fat=_fat(small),
        px_mm=px_mm,
    )
    return _decide(_measure(masks), _head_hint(body_part))


def check_grey(
    grey: np.ndarray,
    spacing_mm: float | Sequence[float] | None = None,
    *,
    body_part: str | None = None,
    image_type: Sequence[str] = (),
) -> Scope:
    """Head or not, from an HxW windowed grey image in [0, 1] (the window unknown); the
    arguments are those of ``check_hu``."""
    early = _precheck(grey, image_type)
    if early is not None:
        return early
    grey = np.clip(grey, 0.0, 1.0)
    small = _shrink(grey)
    px_mm = _px_mm(spacing_mm, grey.shape, small.shape)
    body = _body(small > DARK_GREY, px_mm, close=5)
    bright, clipped = _bright_level(small, body)
    if clipped:  # the plateau is solid: threshold where the noise has been averaged away
        bone = _despeckle(body & (small >= bright))
    else:  # a bone window: thin bone is only bright at full resolution
        bone = _bone_full(grey, bright, small.shape, body)
    masks = _Masks(
        body=body,
        bone=bone,
        soft=(small > DARK_GREY) & (small < bright),
        air=small <= DARK_GREY,
        fat=None,
        px_mm=px_mm,
    )
    return _decide(_measure(masks), _head_hint(body_part))


# --- preparing the working grid -----------------------------------------------------------


def _precheck(img: np.ndarray, image_type: Sequence[str]) -> Scope | None:
    """The decisions that need no measurement: a scout by its ImageType, or by its shape."""
    if img.ndim != 2:
        raise ValueError(f"the gate needs a 2-D image, got shape {img.shape}")
    if any(str(v).strip().upper() == "LOCALIZER" for v in image_type):
        return Scope(False, "ImageType says LOCALIZER (a scout)")
    h, w = int(img.shape[0]), int(img.shape[1])
    if min(h, w) < MIN_SIDE:
        return Scope(False, f"{h}x{w} pixels is too small to show a head")
    if max(h, w) / min(h, w) > MAX_ASPECT:
        return Scope(False, f"{h}x{w} pixels is too long for an axial slice (a scout?)")
    return None


def _shrink(img: np.ndarray) -> np.ndarray:
    """Area-average to ``WORK_SIDE`` on the long side: noise drops and thin structures fade."""
    scale = max(img.shape) / WORK_SIDE
    if scale <= 1.0:
        return np.asarray(img, dtype=np.float32)
    h, w = img.shape
    size = (max(1, round(w / scale)), max(1, round(h / scale)))
    return cv2.resize(np.asarray(img, dtype=np.float32), size, interpolation=cv2.INTER_AREA)


def _px_mm(
    spacing_mm: float | Sequence[float] | None, shape: tuple[int, ...], small: tuple[int, ...]
) -> float | None:
    """mm per working pixel, or None when the spacing is missing or absurd."""
    if spacing_mm is None:
        return None
    if isinstance(spacing_mm, int | float):
        values = [float(spacing_mm)]
    else:
        values = [float(v) for v in spacing_mm]
    if not values or not all(np.isfinite(v) and 0.05 <= v <= 10.0 for v in values):
        return None
    return float(np.mean(values)) * shape[0] / small[0]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    flood = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(flood, None, (0, 0), 1)
    return mask | (flood[1:-1, 1:-1] == 0)


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, areas) of the 8-connected components of ``mask``, 0 the background.

    OpenCV's labelling with its statistics costs three to four times the labelling alone (on a
    128² grid, 0.12 against 0.035 ms; docs/decoding.md, "Cost per stage"): the areas, all that
    is read of them, are counted here instead, and ``_rings`` finds the few bounding boxes it
    needs. The labels are the same: both calls run the same labelling algorithm."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8, copy=False), connectivity=8)
    return labels, np.bincount(labels.ravel())


def _body(candidate: np.ndarray, px_mm: float | None, close: int = 1) -> np.ndarray:
    """The largest component after an opening that removes thin structures (table, holder).

    Holes are filled first, so that a thin skin line around black fat (a brain window) still
    encloses it; ``close`` > 1 first bridges gaps in that line.
    """
    mask: np.ndarray = candidate.astype(np.uint8)
    if close > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close, close))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    mask = _fill_holes(mask > 0).astype(np.uint8)
    k = 3 if px_mm is None else max(1, round(5.0 / px_mm) | 1)  # about 5 mm
    if k > 1 and min(mask.shape) >= 48:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    labels, areas = _components(mask)
    if areas.size <= 1:
        return np.zeros(candidate.shape, dtype=bool)
    largest = 1 + int(np.argmax(areas[1:]))
    return _fill_holes(labels == largest)


def body_box(values: np.ndarray, floor: float) -> tuple[float, float, float, float] | None:
    """(top, left, height, width), in ``values``' own pixels, of the body: the largest
    component of ``values`` above ``floor`` as the gate finds it (``_shrink``, ``_body``: holes
    filled, the thin table and head holder opened away); None when there is none."""
    small = _shrink(values)
    body = _body(small > floor, None)
    if not body.any():
        return None
    scale = max(values.shape[:2]) / max(small.shape[:2])
    top, left, height, width = _box(body)
    return top * scale, left * scale, height * scale, width * scale


def _despeckle(mask: np.ndarray) -> np.ndarray:
    """Drop bone components under ``MIN_BONE_PX`` pixels or ``MIN_BONE_SHARE`` of the largest:
    noise above a threshold (a brain window saturates dense muscle's noise) is not bone. On a
    grid under 128 pixels the floor shrinks with the area: a 32-pixel skull is in pieces."""
    labels, areas = _components(mask)
    if areas.size <= 1:
        return np.zeros(mask.shape, dtype=bool)
    min_px = max(1.0, MIN_BONE_PX * (max(mask.shape) / WORK_SIDE) ** 2)  # small images: 1
    floor = max(min_px, MIN_BONE_SHARE * float(areas[1:].max()))
    keep = areas >= floor
    keep[0] = False  # the background
    return keep[labels]


def _bone_full(
    full: np.ndarray, level: float, small: tuple[int, ...], body: np.ndarray
) -> np.ndarray:
    """Bone on the working grid, thresholded at full resolution: a working pixel is bone when a
    quarter of it is, so a 2 mm temporal squama survives the downsampling."""
    mask: np.ndarray = (full >= level).astype(np.float32)
    if mask.shape != small:
        mask = cv2.resize(mask, (small[1], small[0]), interpolation=cv2.INTER_AREA)
    return _despeckle(body & (mask >= BONE_SHARE))


def _fat(small: np.ndarray) -> np.ndarray:
    """Fat, not counting the partial-volume rim where air meets soft tissue (a sinus wall
    averages to fat's -100 HU on the working grid)."""
    fat = (small >= FAT_HU[0]) & (small < FAT_HU[1])
    air = cv2.dilate((small < AIR_HU).astype(np.uint8), np.ones((3, 3), np.uint8))
    return fat & (air == 0)


def _mode(values: np.ndarray) -> float:
    """The most common grey level (64 bins, lightly smoothed): below the plateau, soft tissue
    (or fat), whatever share of the body bone is (the vertex)."""
    counts, edges = np.histogram(values, bins=64, range=(0.0, 1.0))
    i = int(np.argmax(np.convolve(counts, [1, 2, 1], "same")))
    return float(edges[i] + edges[i + 1]) / 2


def _bright_level(small: np.ndarray, body: np.ndarray) -> tuple[float, bool]:
    """(level, clipped): the grey level above which a windowed image shows bone, the window
    being unknown, and whether the window clips bone.

    Brain, subdural and soft-tissue windows clip bone at the top: most pixels in the upper half
    between tissue (the median of the body's non-dark pixels; a brain window shows fat black)
    and the maximum sit on that plateau (with blood >= 80 HU in a brain window), or 5 % of the
    body is white, or the commonest grey below the plateau (soft tissue; fat in a fatty
    abdomen) sits mid-range; bone is then the plateau.
    A bone window (level >= 300 HU) puts soft tissue near 0.3 and spreads bone over the upper
    part: the level sits ``SPREAD_SHARE`` of the way from tissue to the top.
    """
    values = small[body]
    values = values[values > DARK_GREY]
    if values.size == 0:
        return 1.0, True
    top = float(values.max())
    tissue = float(np.median(values))
    below = values[values < top - PLATEAU_GREY]
    mode = _mode(below) if below.size else top
    upper = np.count_nonzero(values > tissue + 0.5 * (top - tissue))
    plateau = np.count_nonzero(values >= top - PLATEAU_GREY)
    white = np.count_nonzero(values >= WHITE_GREY) / values.size
    if plateau >= 0.5 * upper or white >= MIN_WHITE_SHARE or mode >= MID_TISSUE:
        return max(top - PLATEAU_GREY, mode + 0.05), True
    return tissue + SPREAD_SHARE * (top - tissue), False


# --- the rays -----------------------------------------------------------------------------


def _origins(body: np.ndarray, bone: np.ndarray) -> list[tuple[float, float]]:
    """Where rays start: the body's centroid and, when they lie in the body off bone, two points
    a fifth of the body's length from it along its long axis. At the skull base the centroid
    often falls on the petrous bones or the clivus, the cranial fossae in front and behind."""
    ys, xs = np.nonzero(body)
    cy, cx = float(ys.mean()), float(xs.mean())
    if ys.size < 3:
        return [(cy, cx)]
    # np.cov's arithmetic, without its argument handling (a tenth of the gate's time)
    points = np.stack([ys, xs]).astype(np.float64)
    points -= points.mean(axis=1)[:, None]
    cov = np.dot(points, points.T)
    cov *= np.true_divide(1, ys.size - 1)
    values, vectors = np.linalg.eigh(cov)
    # The long axis's half-length is about 2 standard deviations: a fifth of the length is 0.8.
    dy, dx = vectors[:, int(np.argmax(values))] * 0.8 * np.sqrt(max(float(values.max()), 0.0))
    found = [(cy, cx)]
    for sy, sx in ((cy + dy, cx + dx), (cy - dy, cx - dx)):
        y, x = round(sy), round(sx)
        if 0 <= y < body.shape[0] and 0 <= x < body.shape[1] and body[y, x] and not bone[y, x]:
            found.append((sy, sx))
    return found


def _best_rays(body: np.ndarray, bone: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """``_rays`` from each of ``_origins``: the answer with the most skull-like rays (the first
    of them on a tie, so an origin whose every ray is skull-like ends the search)."""
    labels, _ = _components(bone)
    # One look-up per sample for both questions (in the body? which bone?): -1 off the body.
    code = np.where(body, labels, -1).astype(np.int32, copy=False)
    x, y, w, h = cv2.boundingRect(body.astype(np.uint8))
    corners = ((y, x), (y, x + w - 1), (y + h - 1, x), (y + h - 1, x + w - 1))
    results = []
    for origin in _origins(body, bone):
        # No body pixel lies farther from the origin than the body's farthest box corner: rays
        # stop there (a sample past it is never in the body, and samples off it decide nothing).
        reach = max(math.hypot(cy - origin[0], cx - origin[1]) for cy, cx in corners)
        results.append(_rays(code, labels, origin, reach + 2.0))
        if results[-1][1]["skull_rays"] >= 1.0:  # nothing can beat it
            break
    return max(results, key=lambda r: r[1]["skull_rays"])


def _rays(
    code: np.ndarray,
    labels: np.ndarray,
    origin: tuple[float, float],
    length: float,
) -> tuple[np.ndarray, dict[str, float]]:
    """The shell polygon and the ray figures: 64 rays of ``length`` pixels from ``origin``
    (row, column) over ``code``, each pixel's bone component ``labels`` (0: no bone) in the body
    and -1 off it.

    A ray is skull-like when its outermost bone lies near the body's edge (``MAX_DEPTH``: the
    scalp is thin, the occipital muscles at the skull base are not) and that bone layer is thin
    (``MAX_LAYER``: a skull, not a liver or a femoral head); or, at the vertex, when a thick
    layer right under the skin belongs to a ring around the origin. The polygon joins the
    outermost bone of the skull-like rays and bridges the others by interpolation, which closes
    a skull base's gaps (foramen magnum, orbits) without a morphological kernel.
    """
    h, w = code.shape
    cy, cx = origin
    radii = np.arange(0.0, min(length, float(np.hypot(h, w))), 0.5, dtype=np.float32)
    yy = np.rint(cy + _SIN[:, None] * radii[None, :]).astype(np.int32)
    xx = np.rint(cx + _COS[:, None] * radii[None, :]).astype(np.int32)
    # Negative coordinates read as unsigned are huge: two comparisons test both bounds.
    inside = (yy.view(np.uint32) < h) & (xx.view(np.uint32) < w)
    yy *= w
    yy += xx
    np.multiply(yy, inside, out=yy)  # samples off the image look at pixel 0; ``inside`` rules
    looked = code.ravel()[yy]
    in_body = inside & (looked >= 0)
    sampled = np.where(in_body, looked, 0)
    on_bone = sampled > 0
    index = np.arange(radii.size)
    edge = radii[(radii.size - 1) - np.argmax(in_body[:, ::-1], axis=1)]
    hit = on_bone.any(axis=1)
    last = (radii.size - 1) - np.argmax(on_bone[:, ::-1], axis=1)  # the outermost bone sample
    # Going inward, the layer ends at 4 samples (2 px) of non-bone; ``run`` marks the outermost
    # sample of each such run.
    off = ~on_bone
    run = off.copy()
    for k in range(1, 4):
        run[:, k:] &= off[:, :-k]
    run[:, :3] = False
    inner = np.where(run & (index[None, :] < last[:, None]), index[None, :], -1).max(axis=1)
    layer = np.where(inner >= 0, last - inner, last + 1) * 0.5
    outer = radii[last]
    component = sampled[_RAY, last]
    reach = np.maximum(edge, 1.0)
    depth = edge - outer
    thin = (depth <= MAX_DEPTH * reach) & (layer <= MAX_LAYER * reach)
    thin &= depth + layer <= MAX_DEPTH_LAYER * reach
    tangential = hit & ~thin & (depth <= VERTEX_DEPTH * reach) & (layer <= VERTEX_LAYER * reach)
    skull = hit & thin
    if tangential.any():
        centre = (round(cy), round(cx))
        rings = _rings(labels, {int(c) for c in component[tangential]}, centre)
        if rings:
            skull |= hit & tangential & np.isin(component, list(rings))
    figures = {"bone_rays": float(hit.mean()), "skull_rays": float(skull.mean())}
    if not skull.any():
        return np.zeros((h, w), dtype=bool), figures
    known = np.flatnonzero(skull)
    r = np.interp(np.arange(N_RAYS), known, outer[known], period=N_RAYS)
    points = np.stack([cx + _COS * r, cy + _SIN * r], axis=1)
    shell = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(shell, [np.rint(points).astype(np.int32)], 1)
    return shell.astype(bool), figures


def _rings(labels: np.ndarray, candidates: set[int], centre: tuple[int, int]) -> set[int]:
    """The bone components among ``candidates`` that enclose ``centre``: a skull cut
    tangentially at the vertex is a thick ring around the brain; a liver is a blob beside it.

    Each is closed and filled inside its bounding box with a 2-pixel margin (where the image
    allows): a closing with a 3x3 kernel adds nothing beyond 1 pixel inside the image (OpenCV's
    erosion takes the outside as set, so a piece 1 pixel from the edge gains that edge's
    pixels: still inside the margin), and a hole of the closed piece lies inside that crop, so
    the answer is the whole image's."""
    kernel = np.ones((3, 3), np.uint8)
    h, w = labels.shape
    cy, cx = centre
    found = set()
    for label in candidates - {0}:
        mask = labels == label
        y, x, bh, bw = _box(mask)
        y0, y1, x0, x1 = max(y - 2, 0), min(y + bh + 2, h), max(x - 2, 0), min(x + bw + 2, w)
        if not (y0 <= cy < y1 and x0 <= cx < x1):
            continue
        piece = mask[y0:y1, x0:x1].astype(np.uint8)
        piece = cv2.morphologyEx(piece, cv2.MORPH_CLOSE, kernel)
        if _fill_holes(piece > 0)[cy - y0, cx - x0]:
            found.add(label)
    return found


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a non-empty mask's bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


# --- measuring and deciding ---------------------------------------------------------------


def _measure(m: _Masks) -> dict[str, float]:
    """Every figure the rules read; only the body's when there is no body."""
    px_cm2 = None if m.px_mm is None else (m.px_mm / 10.0) ** 2
    body_px = int(np.count_nonzero(m.body))
    figures = {"body_fraction": body_px / m.body.size}
    if px_cm2 is not None:
        figures["body_cm2"] = body_px * px_cm2
    if body_px == 0:
        return figures
    figures["cut_share"] = _cut_share(m.body)
    if m.px_mm is not None:
        contours, _ = cv2.findContours(
            m.body.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        _, (rw, rh), _ = cv2.minAreaRect(max(contours, key=cv2.contourArea))
        figures["body_extent_mm"] = max(rw, rh) * m.px_mm
    shell, rays = _best_rays(m.body, m.bone)
    figures.update(rays)
    shell &= m.body
    inner = shell & ~m.bone
    inner_px = max(int(np.count_nonzero(inner)), 1)
    soft_px = int(np.count_nonzero(inner & m.soft))
    figures["shell_of_body"] = int(np.count_nonzero(shell)) / body_px
    figures["soft_fraction"] = soft_px / inner_px
    figures["air_fraction"] = int(np.count_nonzero(inner & m.air)) / inner_px
    if m.fat is not None:
        figures["fat_fraction"] = int(np.count_nonzero(inner & m.fat)) / inner_px
    if px_cm2 is not None:
        figures["soft_cm2"] = float(soft_px) * px_cm2
    return figures


def _cut_share(body: np.ndarray) -> float:
    """Share of the body's outline that lies on the image's edge (the body runs off it)."""
    mask = body.astype(np.uint8)
    eroded: np.ndarray = cv2.erode(mask, np.ones((3, 3), np.uint8), borderValue=0)
    outline = mask & (1 - eroded)
    frame = np.zeros_like(mask)
    frame[[0, -1], :] = 1
    frame[:, [0, -1]] = 1
    return float((outline & frame).sum()) / max(int(outline.sum()), 1)


def _head_hint(body_part: str | None) -> bool:
    text = "".join(ch for ch in str(body_part or "").upper() if ch.isalnum())
    return any(part in text for part in HEAD_PARTS)


def _decide(f: dict[str, float], hint: bool) -> Scope:
    """The first rule a slice fails decides; a slice that fails none is a head."""
    if "body_cm2" in f:
        has_body = f["body_cm2"] >= MIN_BODY_CM2
    else:
        has_body = f["body_fraction"] >= MIN_BODY_FRACTION
    if not has_body or "cut_share" not in f:
        return Scope(False, "no body in the image (blank, air or a small object)", f)
    r = HINT_RELAX if hint else 1.0
    low, high = BODY_EXTENT_MM
    extent = f.get("body_extent_mm", (low + high) / 2)
    rules = [
        (
            f["cut_share"] <= MAX_CUT_SHARE,
            f"the body runs off the image on {f['cut_share']:.0%} of its outline: part of a "
            "larger body (a head scan holds the whole head)",
        ),
        (
            low <= extent <= high,
            f"the body is {extent:.0f} mm across, outside a head's {low:.0f}..{high:.0f} mm",
        ),
        (
            f["skull_rays"] >= MIN_SKULL_RAYS * r,
            f"a skull under the skin in {f['skull_rays']:.0%} of directions from the centre "
            f"(a head: >= {MIN_SKULL_RAYS * r:.0%})",
        ),
        (
            f["shell_of_body"] >= MIN_SHELL_OF_BODY * r,
            f"the bone shell holds {f['shell_of_body']:.0%} of the body "
            f"(a head: >= {MIN_SHELL_OF_BODY * r:.0%})",
        ),
        (
            f["soft_fraction"] >= MIN_SOFT_FRACTION * r,
            f"soft tissue fills {f['soft_fraction']:.0%} of the shell "
            f"(a head: >= {MIN_SOFT_FRACTION * r:.0%})",
        ),
        (
            f["air_fraction"] <= MAX_AIR_FRACTION,
            f"air (or black) fills {f['air_fraction']:.0%} of the shell: lungs or bowel "
            f"(a head: <= {MAX_AIR_FRACTION:.0%})",
        ),
        (
            f.get("fat_fraction", 0.0) <= MAX_FAT_FRACTION,
            f"fat fills {f.get('fat_fraction', 0.0):.0%} of the shell "
            f"(a head: <= {MAX_FAT_FRACTION:.0%})",
        ),
        (
            f.get("soft_cm2", MIN_SOFT_CM2) >= MIN_SOFT_CM2 * r,
            f"{f.get('soft_cm2', 0.0):.1f} cm² of soft tissue inside the shell: no brain "
            f"(a head: >= {MIN_SOFT_CM2 * r:.1f})",
        ),
    ]
    for ok, why in rules:
        if not ok:
            return Scope(False, why, f)
    return Scope(True, "a skull around soft tissue, head-sized", f)
