"""Evaluate a model on any labelled folder (``hemoscan evaluate``).

Reports the classification metrics at the model's stored threshold (plus sensitivity at 95%
specificity on this data), and, when ``masks/`` exists, the Grad-CAM pointing game: the
fraction of true-positive slices whose Grad-CAM peak, mapped back to native pixel coordinates,
falls inside the lesion mask dilated by ``POINTING_TOLERANCE_PX`` (2 pixels) of tolerance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

POINTING_TOLERANCE_PX = 2


def pointing_hit(
    mask: np.ndarray | None,
    point: tuple[int, int] | None,
    tolerance: int = POINTING_TOLERANCE_PX,
) -> bool:
    """Whether ``point`` lies in ``mask`` dilated by ``tolerance`` pixels; an all-zero map (no
    point) or an unreadable mask is a miss."""
    if mask is None or point is None:
        return False
    if tolerance > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1,) * 2)
        mask = cv2.dilate(mask, kernel)
    row, col = point
    return bool(0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and mask[row, col] > 0)


def breakdown(
    root: Path, ids: list[str], labels: np.ndarray, flagged: np.ndarray
) -> dict[str, Any]:
    """With the CT phantoms' ``slices.csv`` and ``series.csv``: sensitivity per hemorrhage kind
    and the false-positive rate on normal slices of series carrying each mimic."""
    import csv

    slices_csv, series_csv = root / "slices.csv", root / "series.csv"
    if not (slices_csv.is_file() and series_csv.is_file()):
        return {}
    with open(slices_csv, newline="") as fh:
        kinds = {r["id"]: [k for k in r["kinds"].split(";") if k] for r in csv.DictReader(fh)}
        fh.seek(0)
        series_of = {r["id"]: r["series"] for r in csv.DictReader(fh)}
    with open(series_csv, newline="") as fh:
        mimics = {r["series"]: [m for m in r["mimics"].split(";") if m] for r in csv.DictReader(fh)}
    by_kind: dict[str, dict[str, Any]] = {}
    by_mimic: dict[str, dict[str, Any]] = {}
    for sid, label, hit in zip(ids, labels, flagged, strict=True):
        if label:
            for kind in kinds.get(sid, []):
                row = by_kind.setdefault(kind, {"slices": 0, "detected": 0})
                row["slices"] += 1
                row["detected"] += int(hit)
        else:
            for mimic in ["none", *mimics.get(series_of.get(sid, ""), [])]:
                row = by_mimic.setdefault(mimic, {"slices": 0, "flagged": 0})
                row["slices"] += 1
                row["flagged"] += int(hit)
    for row in by_kind.values():
        row["rate"] = row["detected"] / max(row["slices"], 1)
    for row in by_mimic.values():
        row["rate"] = row["flagged"] / max(row["slices"], 1)
    by_mimic["all normal slices"] = by_mimic.pop("none", {"slices": 0, "flagged": 0, "rate": 0.0})
    return {"by_kind": dict(sorted(by_kind.items())), "mimics": by_mimic}


SKULL_BASE_LEVEL = 0.3  # levels run 0 (skull base) .. 1 (vertex); train's emphasis uses it too
SMALL_LESION_MM2 = 100.0  # the upper of the two small-lesion bins (and train's emphasis)
LEVELS = (("skull base (< 0.3)", 0.0, SKULL_BASE_LEVEL),
          ("middle (0.3-0.7)", SKULL_BASE_LEVEL, 0.7),
          ("vertex (> 0.7)", 0.7, 1.01))  # fmt: skip


def stratum(labels: np.ndarray, probs: np.ndarray, threshold: float | np.ndarray) -> dict[str, Any]:
    """Slices, positives, ROC AUC, sensitivity and specificity at ``threshold`` (one, or one
    per item; None where a class is missing)."""
    from sklearn.metrics import roc_auc_score

    pos, neg = labels == 1, labels == 0
    flagged = probs >= threshold
    return {
        "slices": int(len(labels)),
        "hemorrhage": int(pos.sum()),
        "roc_auc": float(roc_auc_score(labels, probs)) if pos.any() and neg.any() else None,
        "sensitivity": float(flagged[pos].mean()) if pos.any() else None,
        "specificity": float((~flagged[neg]).mean()) if neg.any() else None,
    }


def strata(
    root: Path, ids: list[str], labels: np.ndarray, probs: np.ndarray, threshold: float
) -> dict[str, Any]:
    """With the CT phantoms' ``slices.csv``: ROC AUC, sensitivity and specificity by export
    format (DICOM, 8/16-bit windowed PNG, HU + 1024 PNG) and by level in the head (0 at the
    skull base, 1 at the vertex): where a model fails."""
    import csv

    slices_csv = root / "slices.csv"
    if not slices_csv.is_file():
        return {}
    with open(slices_csv, newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    known = np.array([i in rows for i in ids], bool)
    fmt = np.array([rows[i]["format"] if i in rows else "" for i in ids])
    level = np.array([float(rows[i]["level"]) if i in rows else -1.0 for i in ids])
    by_format = {
        f: stratum(labels[fmt == f], probs[fmt == f], threshold) for f in sorted(set(fmt[known]))
    }
    by_level = {}
    for name, low, high in LEVELS:
        m = known & (level >= low) & (level < high)
        if m.any():
            by_level[name] = stratum(labels[m], probs[m], threshold)
    out = {"by_format": by_format, "by_level": by_level}
    out.update(_by_lesion_and_neighbour(root, ids, labels, probs >= threshold, rows))
    return out


LESION_MM2_BINS = (0.0, 25.0, SMALL_LESION_MM2, 400.0, float("inf"))


def _by_lesion_and_neighbour(root: Path, ids, labels, flagged, rows) -> dict[str, Any]:
    """Sensitivity by lesion area in the slice (mm², from the mask and the series' pixel
    spacing), and the false-positive rate of normal slices next to a hemorrhage slice of
    their series (blood in less than half of their slab: the label's boundary) against the
    other normal slices."""
    from hybrid_model.synth.write import slice_facts

    facts = slice_facts(root)
    if not facts:
        return {}
    positive = {(r["series"], int(r["instance"])) for r in rows.values() if r["hemorrhage"] == "1"}
    names = [
        f"{low:g}-{high:g} mm2" if high < float("inf") else f">= {low:g} mm2"
        for low, high in zip(LESION_MM2_BINS, LESION_MM2_BINS[1:], strict=False)
    ]
    by_size: dict[str, dict[str, Any]] = {n: {"slices": 0, "detected": 0} for n in names}
    near = {"next to a hemorrhage slice": [0, 0], "other normal slices": [0, 0]}
    for sid, label, hit in zip(ids, labels, flagged, strict=True):
        r = rows.get(sid)
        if r is None or sid not in facts:
            continue
        if label:
            area = facts[sid][1]
            row = by_size[names[int(np.searchsorted(LESION_MM2_BINS, area, "right")) - 1]]
            row["slices"] += 1
            row["detected"] += int(hit)
        else:
            key = (r["series"], int(r["instance"]))
            beside = {(key[0], key[1] - 1), (key[0], key[1] + 1)} & positive
            cell = near["next to a hemorrhage slice" if beside else "other normal slices"]
            cell[0] += 1
            cell[1] += int(hit)
    by_size = {k: {**v, "rate": v["detected"] / v["slices"]} for k, v in by_size.items()
               if v["slices"]}  # fmt: skip
    return {
        "by_lesion_area": by_size,
        "normal_by_neighbour": {
            k: {"slices": n, "flagged": f, "rate": f / n if n else None}
            for k, (n, f) in near.items()
        },
    }


def skipped_summary(root: Path, skipped: dict[str, str]) -> dict[str, Any]:
    """Skipped slices by reason, with how many of them were labelled hemorrhage (a positive
    slice the out-of-scope gate rejects is a bleed the screening never scores)."""
    import csv

    from hybrid_model.data import list_labelled

    if not skipped:
        return {}
    label_of = {str(path): label for path, label in list_labelled(root)}
    out: dict[str, Any] = {}
    for path, reason in skipped.items():
        row = out.setdefault(reason, {"slices": 0, "hemorrhage": 0})
        row["slices"] += 1
        row["hemorrhage"] += int(label_of.get(path, 0))
    levels = root / "slices.csv"
    if levels.is_file() and "not_head" in out:
        with open(levels, newline="") as fh:
            level = {r["id"]: float(r["level"]) for r in csv.DictReader(fh)}
        rejected = [level.get(Path(p).stem) for p, r in skipped.items() if r == "not_head"]
        found = [v for v in rejected if v is not None]
        out["not_head"]["levels"] = {
            "skull base (level < 0.2)": sum(v < 0.2 for v in found),
            "middle": sum(0.2 <= v <= 0.85 for v in found),
            "vertex (level > 0.85)": sum(v > 0.85 for v in found),
        }
    return out


def evaluate(
    data_dir: str | Path,
    model_path: str | Path | None = None,
    *,
    batch_size: int = 32,
    tolerance_px: int = POINTING_TOLERANCE_PX,
    show: bool = True,
) -> dict[str, Any]:
    """Score every labelled image; return (and print) metrics and the pointing game."""
    from hybrid_model.data import load_labelled
    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import DEMO_MODEL_PATH, load_model
    from hybrid_model.metrics import classification_metrics, render_metrics
    from hybrid_model.render import peak

    loaded = load_model(model_path or DEMO_MODEL_PATH)
    data = load_labelled(data_dir, loaded.input_size, framing=loaded.framing)
    cam = GradCam(loaded.model, model_batch=batch_size)
    threshold = loaded.threshold
    probs = np.zeros(len(data.labels), np.float32)
    hits = slices = 0
    for start in range(0, len(data.labels), batch_size):
        idx = np.arange(start, min(start + batch_size, len(data.labels)))
        batch_probs, maps = cam(data.floats(idx))
        probs[idx] = batch_probs
        for j, i in enumerate(idx):
            mask_path = data.masks.get(data.ids[i])
            if data.labels[i] == 1 and batch_probs[j] >= threshold and mask_path is not None:
                slices += 1
                mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                hits += pointing_hit(
                    mask, peak(maps[j], data.native_shapes[i], data.frames[i]), tolerance_px
                )
    metrics = classification_metrics(data.labels, probs, threshold=threshold)
    metrics.update(breakdown(Path(data_dir), data.ids, data.labels, probs >= threshold))
    metrics.update(strata(Path(data_dir), data.ids, data.labels, probs, threshold))
    metrics["model"] = {k: loaded.metadata.get(k) for k in ("version", "phantom_trained")}
    metrics["model"]["path"] = loaded.path
    metrics["skipped"] = data.skipped
    metrics["skipped_summary"] = skipped_summary(Path(data_dir), data.skipped)
    if data.masks:
        metrics["pointing_game"] = {
            "hits": int(hits),
            "slices": int(slices),
            "hit_rate": hits / slices if slices else float("nan"),
            "tolerance_px": tolerance_px,
        }
    if show:
        render_metrics(metrics, title=f"evaluation of {Path(data_dir).name} ({len(probs)} images)")
        for reason, row in metrics["skipped_summary"].items():
            where = row.get("levels")
            print(
                f"skipped {row['slices']} slices as {reason} ({row['hemorrhage']} labelled "
                f"hemorrhage)" + (f"; by level: {where}" if where else "")
            )
        print(loaded.note)
    return metrics
