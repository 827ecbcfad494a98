"""Heatmap outputs: an overlay PNG, raw maps (one image's .npy, many images' .npz) and the map's
peak in native pixels."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from hybrid_model.preprocess import Frame


def overlay_png(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4) -> bytes:
    """JET-coloured ``cam`` blended (weight ``alpha``) on the brain window (channel 0) as PNG."""
    grey = image[..., 0] if image.ndim == 3 else image
    base = cv2.cvtColor(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != grey.shape:
        cam = cv2.resize(cam, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.round(np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(heat, float(alpha), base, 1.0 - float(alpha), 0.0)
    ok, buf = cv2.imencode(".png", blended)
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def raw_map_npy(cam: np.ndarray) -> bytes:
    """The map as float16 ``.npy`` bytes (half the size; 3 significant digits is plenty)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(cam, dtype=np.float16), allow_pickle=False)
    return buf.getvalue()


def maps_npz(
    maps: np.ndarray,
    input_size: tuple[int, int],
    frames: Sequence[Frame | None] | None = None,
) -> bytes:
    """Many images' maps in one uncompressed ``.npz``: ``maps`` (N, h, w) float16,
    ``input_size``, the model input (H, W) they explain, at which an overlay is drawn, and
    ``frames`` (N, 3) int32: top, left, side of the square of the native image each map covers
    (``preprocess.Frame``; side 0 where unknown, as in packs written before frames were)."""
    buf = io.BytesIO()
    arrays = {
        "maps": np.asarray(maps, dtype=np.float16),
        "input_size": np.asarray(input_size, np.int32),
    }
    if frames is not None:
        rows = [(f.top, f.left, f.side) if f is not None else (0, 0, 0) for f in frames]
        arrays["frames"] = np.asarray(rows, np.int32).reshape(-1, 3)
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


class StoredMap(NamedTuple):
    """One image's stored map: float32, the model input size (H, W) to draw it at, and the
    native square it covers (None: unknown, the letterbox of the image; a one-image map)."""

    cam: np.ndarray
    input_size: tuple[int, int]
    frame: Frame | None = None


def read_map(data: bytes, index: int | None) -> StoredMap:
    """One image's map from stored bytes: row ``index`` of a ``maps_npz`` pack, or (``index``
    None) a ``raw_map_npy`` at the input size.

    ValueError when the bytes are neither, or the pack has no such row."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"not a stored map ({exc})") from None
    if index is None:
        if not isinstance(loaded, np.ndarray) or loaded.ndim != 2:
            raise ValueError("not a one-image map (.npy of 2 dimensions)")
        cam = loaded.astype(np.float32)
        return StoredMap(cam, (cam.shape[0], cam.shape[1]))
    if isinstance(loaded, np.ndarray):
        raise ValueError("not a pack of maps (.npz)")
    with loaded:
        try:
            maps, size = loaded["maps"], loaded["input_size"]
            frames = loaded["frames"] if "frames" in loaded.files else None
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a pack of maps ({exc})") from None
    if maps.ndim != 3 or size.shape != (2,) or not 0 <= index < len(maps):
        raise ValueError(f"the pack holds no map {index} ({len(maps)} maps)")
    frame = None
    if frames is not None and frames.shape == (len(maps), 3) and frames[index, 2] > 0:
        top, left, side = (int(v) for v in frames[index])
        frame = Frame(top, left, side)
    return StoredMap(maps[index].astype(np.float32), (int(size[0]), int(size[1])), frame)


def peak(
    cam: np.ndarray, native_shape: tuple[int, int], frame: Frame | None = None
) -> tuple[int, int] | None:
    """(row, col) of the map's maximum in ORIGINAL image pixels; None for an all-zero map.

    Undoes ``preprocess.resize_to_model``: the map covers ``frame`` (default: the letterboxed
    square of side max(H, W)) scaled to the model input; pixel centres map as (i + 0.5) x scale
    - 0.5. A peak outside the image (in a frame's padding) is moved to the nearest edge pixel.
    An all-zero map (no positive evidence anywhere) has no peak: reporting its first pixel would
    point at the image's corner as if it meant something.
    """
    cam = np.asarray(cam)
    if not np.any(cam > 0):
        return None
    r, c = np.unravel_index(int(np.argmax(cam)), cam.shape[:2])
    if frame is None:
        frame = Frame.letterbox(native_shape)
    row = (r + 0.5) * frame.side / cam.shape[0] - 0.5 + frame.top
    col = (c + 0.5) * frame.side / cam.shape[1] - 0.5 + frame.left
    height, width = int(native_shape[0]), int(native_shape[1])
    return int(np.clip(round(row), 0, height - 1)), int(np.clip(round(col), 0, width - 1))
