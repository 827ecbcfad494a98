"""Labelled image folders -> arrays for training and evaluation.

The layouts (``hybrid_model.layouts``): ``labels.csv`` (``id,hemorrhage``; id = file stem,
the Kaggle "Head CT - hemorrhage" layout) beside the images or above them (images in
subfolders, e.g. one per series), one subfolder per class (``0/`` ``1/`` or ``normal/``
``hemorrhage/``), RSNA 2019 and CQ500. Optional ``masks/<id>.png`` lesion masks are picked up
for the pointing game.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid_model import layouts
from hybrid_model.errors import ImageError, ModelError
from hybrid_model.layouts import Entry
from hybrid_model.preprocess import Frame, decode_native, model_frame, resize_to_model

log = logging.getLogger(__name__)
__all__ = ["DatasetError", "LabelledSet", "list_entries", "list_labelled", "load_labelled"]


class DatasetError(ModelError):
    """A data folder has no usable labelled images."""


@dataclass
class LabelledSet:
    images: np.ndarray  # N x size x size x 3, uint8 (windowed [0, 1] quantised to 256 levels)
    labels: np.ndarray  # N int
    ids: list[str]
    files: list[Path]
    native_shapes: list[tuple[int, int]]
    masks: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # per image: patient/study/series digest
    frames: list[Frame] = field(default_factory=list)  # per image: what the model sees of it

    def floats(self, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        return self.images[idx].astype(np.float32) / 255.0


def list_entries(data_dir: str | Path) -> list[Entry]:
    """Labelled files with their split groups, from any layout of ``hybrid_model.layouts``."""
    try:
        return layouts.entries(data_dir)[1]
    except layouts.LayoutError as exc:
        raise DatasetError(str(exc)) from None


def list_labelled(data_dir: str | Path) -> list[tuple[Path, int]]:
    """(file, label) pairs from any layout."""
    return [(e.path, e.label) for e in list_entries(data_dir)]


def load_labelled(
    data_dir: str | Path, size: int = 256, *, head_gate: bool = True, framing: str = "letterbox"
) -> LabelledSet:
    """Decode every labelled image (bad files are skipped and counted, not fatal), framed as a
    model with this ``framing`` sees it (``preprocess.model_frame``).

    ``head_gate``: skip slices the out-of-scope gate rejects (``not_head``), as scoring does;
    training turns it off so the network also learns that slices without brain (the vertex cap,
    the neck under a head series) are not bleeds."""
    root = Path(data_dir)
    images, labels, ids, files, shapes, groups, frames, skipped = [], [], [], [], [], [], [], {}
    for entry in list_entries(root):
        path, label = entry.path, entry.label
        try:
            native = decode_native(path.read_bytes(), path.name, head_gate=head_gate)
        except ImageError as exc:
            skipped[str(path)] = exc.reason
            log.warning("skipping %s: %s", path.name, exc.reason)
            continue
        frame = model_frame(native, framing)
        images.append(np.round(resize_to_model(native, size, frame) * 255).astype(np.uint8))
        frames.append(frame)
        labels.append(label)
        ids.append(path.stem)
        files.append(path)
        shapes.append(native.shape[:2])
        groups.append(entry.group)
    if not images:
        raise DatasetError(f"no decodable images in {root}")
    mask_dir = root / "masks"
    masks = {i: mask_dir / f"{i}.png" for i in ids if (mask_dir / f"{i}.png").is_file()}
    return LabelledSet(
        np.stack(images),
        np.asarray(labels, dtype=np.int64),
        ids,
        files,
        shapes,
        masks,
        skipped,
        groups,
        frames,
    )
