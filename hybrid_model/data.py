"""Labelled image folders -> arrays for training and evaluation.

Two layouts: ``labels.csv`` (``id,hemorrhage``; id = file stem, the Kaggle "Head CT -
hemorrhage" layout) beside the images or above them (images in subfolders, e.g. one per
series), or one subfolder per class (``0/`` ``1/`` or ``normal/``
``hemorrhage/``). Optional ``masks/<id>.png`` lesion masks are picked up for the pointing game.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid_model.errors import ImageError, ModelError
from hybrid_model.preprocess import decode_native, resize_to_model

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
CLASS_DIRS = {"0": 0, "normal": 0, "1": 1, "hemorrhage": 1}


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

    def floats(self, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        return self.images[idx].astype(np.float32) / 255.0


def list_labelled(data_dir: str | Path) -> list[tuple[Path, int]]:
    """(file, label) pairs from either layout."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    labels_csv = root / "labels.csv"
    if labels_csv.is_file():
        # The images may sit in subfolders (one per series: the CT phantoms' layout).
        by_stem = {
            p.stem: p
            for p in sorted(root.rglob("*"))
            if p.suffix.lower() in IMAGE_SUFFIXES and "masks" not in p.relative_to(root).parts
        }
        pairs = []
        with open(labels_csv, newline="") as fh:
            for row in csv.DictReader(fh):
                key = (row.get("id") or "").strip()
                label = (row.get("hemorrhage") or row.get(" hemorrhage") or "").strip()
                if key in by_stem and label in ("0", "1"):
                    pairs.append((by_stem[key], int(label)))
        if not pairs:
            raise DatasetError(f"{labels_csv} names no image found in {root}")
        return pairs
    pairs = [
        (p, label)
        for name, label in CLASS_DIRS.items()
        if (root / name).is_dir()
        for p in sorted((root / name).iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not pairs:
        raise DatasetError(
            f"{root} has neither labels.csv nor class subfolders (0/ 1/ or normal/ hemorrhage/)"
        )
    return pairs


def load_labelled(data_dir: str | Path, size: int = 256, *, head_gate: bool = True) -> LabelledSet:
    """Decode every labelled image (bad files are skipped and counted, not fatal).

    ``head_gate``: skip slices the out-of-scope gate rejects (``not_head``), as scoring does;
    training turns it off so the network also learns that slices without brain (the vertex cap,
    the neck under a head series) are not bleeds."""
    root = Path(data_dir)
    pairs = list_labelled(root)
    images, labels, ids, files, shapes, skipped = [], [], [], [], [], {}
    for path, label in pairs:
        try:
            native = decode_native(path.read_bytes(), path.name, head_gate=head_gate)
        except ImageError as exc:
            skipped[str(path)] = exc.reason
            log.warning("skipping %s: %s", path.name, exc.reason)
            continue
        images.append(np.round(resize_to_model(native, size) * 255).astype(np.uint8))
        labels.append(label)
        ids.append(path.stem)
        files.append(path)
        shapes.append(native.shape[:2])
    if not images:
        raise DatasetError(f"no decodable images in {root}")
    mask_dir = root / "masks"
    masks = {i: mask_dir / f"{i}.png" for i in ids if (mask_dir / f"{i}.png").is_file()}
    return LabelledSet(
        np.stack(images), np.asarray(labels, dtype=np.int64), ids, files, shapes, masks, skipped
    )
