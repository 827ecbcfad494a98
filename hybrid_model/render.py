"""Heatmap outputs: an overlay PNG, raw maps (one image's .npy, many images' .npz) and the map's
peak in native pixels."""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np

from hybrid_model.preprocess import letterbox_geometry


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


def maps_npz(maps: np.ndarray, input_size: tuple[int, int]) -> bytes:
    """Many images' maps in one uncompressed ``.npz``: ``maps`` (N, h, w) float16 and
    ``input_size``, the model input (H, W) they explain, at which an overlay is drawn."""
    buf = io.BytesIO()
    np.savez(
        buf, maps=np.asarray(maps, dtype=np.float16), input_size=np.asarray(input_size, np.int32)
    )
    return buf.getvalue()


def read_map(data: bytes, index: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """One image's map (float32) and the input size to draw it at, from stored bytes: row
    ``index`` of a ``maps_npz`` pack, or (``index`` None) a ``raw_map_npy`` at the input size.

    ValueError when the bytes are neither, or the pack has no such row."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"not a stored map ({exc})") from None
    if index is None:
        if not isinstance(loaded, np.ndarray) or loaded.ndim != 2:
            raise ValueError("not a one-image map (.npy of 2 dimensions)")
        cam = loaded.astype(np.float32)
        return cam, (cam.shape[0], cam.shape[1])
    if isinstance(loaded, np.ndarray):
        raise ValueError("not a pack of maps (.npz)")
    with loaded:
        try:
            maps, size = loaded["maps"], loaded["input_size"]
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a pack of maps ({exc})") from None
    if maps.ndim != 3 or size.shape != (2,) or not 0 <= index < len(maps):
        raise ValueError(f"the pack holds no map {index} ({len(maps)} maps)")
    return maps[index].astype(np.float32), (int(size[0]), int(size[1]))


def peak(cam: np.ndarray, native_shape: tuple[int, int]) -> tuple[int, int] | None:
    """(row, col) of the map's maximum in ORIGINAL image pixels; None for an all-zero map.

    Undoes ``preprocess.resize_to_model``: the map covers the letterboxed square of side
    max(H, W) scaled to the model input; pixel centres map as (i + 0.5) * scale - 0.5. An
    all-zero map (no positive evidence anywhere) has no peak: reporting its first pixel would
    point at the image's corner as if it meant something.
    """
    cam = np.asarray(cam)
    if not np.any(cam > 0):
        return None
    r, c = np.unravel_index(int(np.argmax(cam)), cam.shape[:2])
    side, top, left = letterbox_geometry(native_shape)
    row = (r + 0.5) * side / cam.shape[0] - 0.5 - top
    col = (c + 0.5) * side / cam.shape[1] - 0.5 - left
    height, width = int(native_shape[0]), int(native_shape[1])
    return int(np.clip(round(row), 0, height - 1)), int(np.clip(round(col), 0, width - 1))
