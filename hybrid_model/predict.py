"""Score files and folders with probabilities and Grad-CAM heatmaps (``hemoscan predict``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_model.errors import ImageError, UnreadableImage
from hybrid_model.layouts import IMAGE_SUFFIXES
from hybrid_model.preprocess import (
    DEFAULT_MAX_BYTES,
    Frame,
    decode_native,
    model_frame,
    resize_to_model,
    sniff,
)

HEAD_BYTES = 4096  # sniff needs the first 132 bytes; reading a page costs the same


def _looks_like_image(path: Path) -> bool:
    """An image suffix, or first bytes that are DICOM/PNG/JPEG (PACS exports have no suffix)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        return True  # cannot tell: reported as unreadable rather than skipped in silence
    return sniff(head) is not None


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders walked recursively (sorted) for images by suffix or content.

    A ``masks/`` folder inside a walked folder holds lesion masks, not slices: skipped.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and "masks" not in p.relative_to(path).parts and _looks_like_image(p)
            )
        else:
            out.append(path)
    return out


def _load(
    path: Path, size: int, head_gate: bool = True, framing: str = "letterbox"
) -> tuple[np.ndarray, tuple[int, int], Frame]:
    """(model input, native height x width, what the model sees of it) of one file; every
    failure is an ``ImageError``.

    The read stops one byte past the size limit, so a huge file (or /dev/zero) is refused
    as too_large by ``decode_native`` instead of being read whole.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(DEFAULT_MAX_BYTES + 1)
        native = decode_native(data, path.name, head_gate=head_gate)
        if not np.isfinite(native).all():  # e.g. RescaleSlope NaN: a NaN score is no answer
            raise UnreadableImage(
                f"{path.name}: decoded pixels are not finite (NaN or infinity); "
                "check RescaleSlope / RescaleIntercept"
            )
        frame = model_frame(native, framing)
        shape = (int(native.shape[0]), int(native.shape[1]))
        return resize_to_model(native, size, frame), shape, frame
    except ImageError:
        raise
    except OSError as exc:
        raise UnreadableImage(f"{path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # MemoryError on a hostile header, a decoder's own exception types
        # Only the type: a decoder's message may quote header values, and those may be PHI.
        raise UnreadableImage(f"{path.name}: could not be decoded ({type(exc).__name__})") from exc


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:
        n += 1
        stem = f"{path.stem}-{n}"
    used.add(stem)
    return stem


def predict_paths(
    paths: Iterable[str | Path],
    model_path: str | Path | None = None,
    heatmap_dir: str | Path | None = None,
    *,
    batch_size: int = 16,
    threshold: float | None = None,
    head_gate: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield one dict per image, in input order, scoring ``batch_size`` images per model call.

    Scored: image, probability, label, threshold, heatmap, raw_heatmap (paths or None when no
    ``heatmap_dir``), peak [row, col] in native pixels (null for an all-zero map),
    model_version, model_note.
    Not readable, for any reason: image, error (a reason code of ``hybrid_model.errors``),
    message; no exception escapes for one bad file and the other images are still scored.
    ``head_gate`` False scores slices the out-of-scope gate calls not_head (``scope``).
    """
    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import DEMO_MODEL_PATH, load_model
    from hybrid_model.render import overlay_png, peak, raw_map_npy

    loaded = load_model(model_path or DEMO_MODEL_PATH)
    size = loaded.input_size
    cut = loaded.threshold if threshold is None else float(threshold)
    cam = GradCam(loaded.model, model_batch=batch_size)
    out_dir = Path(heatmap_dir) if heatmap_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    files, used = expand_paths(paths), set[str]()
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        results: list[dict[str, Any]] = []
        good: list[tuple[int, np.ndarray, tuple[int, int], Frame]] = []
        for i, path in enumerate(chunk):
            results.append({"image": str(path)})
            try:
                good.append((i, *_load(path, size, head_gate, loaded.framing)))
            except ImageError as exc:
                results[i].update(error=exc.reason, message=str(exc))
        if good:
            probs, maps = cam(np.stack([g[1] for g in good]))
            for (i, image, shape, frame), prob, cam_map in zip(good, probs, maps, strict=True):
                entry = results[i]
                entry.update(
                    probability=round(float(prob), 6),
                    label="hemorrhage" if prob >= cut else "normal",
                    threshold=round(cut, 6),
                    heatmap=None,
                    raw_heatmap=None,
                    peak=_as_list(peak(cam_map, shape, frame)),
                )
                if out_dir:
                    stem = _unique_stem(chunk[i], used)
                    png, npy = out_dir / f"{stem}.heatmap.png", out_dir / f"{stem}.heatmap.npy"
                    png.write_bytes(overlay_png(image, cam_map))
                    npy.write_bytes(raw_map_npy(cam_map))
                    entry.update(heatmap=str(png), raw_heatmap=str(npy))
        for entry in results:
            entry["model_version"] = loaded.metadata.get("version")
            entry["model_note"] = loaded.note
            yield entry


def _as_list(point: tuple[int, int] | None) -> list[int] | None:
    return None if point is None else list(point)
