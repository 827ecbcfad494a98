"""Sanity checks on real CT: the slices that ship with pydicom and pydicom-data.

Their labels are unknown, so only sanity is checked (issue "The model meets CT it has never
seen"): the spine slice ``CT_small.dcm`` must be rejected as not head CT or score below the
model's threshold; on the head and skull-base slices the Grad-CAM peak must lie on tissue
between 0 and 100 HU (brain or blood), not on bone or air. ``python -m hybrid_model.realct``
prints one row per slice: gate decision, probability, the peak's HU; exit status 1 when a check
fails (``scripts/evaluate_demo.sh`` runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: (file name, what it shows, is it head CT?). The issue listed bad_sequence.dcm as a head slice;
#: it shows a vertebra with its spinal canal and rib heads, no skull (BodyPartExamined NECK, 1 mm,
#: 0.29 mm pixels): rejected as not_head is right, and if scored its peak must be on tissue.
REAL_CT = (
    ("693_UNCR.dcm", "head, skull base", True),
    ("693_J2KR.dcm", "head, skull base (JPEG 2000 lossless of the same slice)", True),
    ("J2K_pixelrep_mismatch.dcm", "head", True),
    (
        "bad_sequence.dcm",
        "spine (BodyPartExamined NECK: a vertebra with rib heads, no skull)",
        None,
    ),
    ("CT_small.dcm", "spine, no brain", False),
)
TISSUE_HU = (0.0, 100.0)


def _file(name: str) -> Path | None:
    from pydicom.data import get_testdata_file

    try:
        found = get_testdata_file(name)
    except Exception:  # pydicom-data missing or a download attempted: absent here
        return None
    return Path(found) if found else None


def check(model_path: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per real CT file: gate, probability, threshold, peak HU, and whether it passes."""
    from hybrid_model.dicom import decode_dicom
    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import DEMO_MODEL_PATH, load_model
    from hybrid_model.preprocess import (
        DEFAULT_MAX_PIXELS,
        dicom_scope,
        hu_to_channels,
        model_frame,
        resize_to_model,
    )
    from hybrid_model.render import peak

    loaded = load_model(model_path or DEMO_MODEL_PATH)
    cam = GradCam(loaded.model)
    rows = []
    for name, what, head in REAL_CT:
        path = _file(name)
        row: dict[str, Any] = {"file": name, "shows": what}
        if path is None:
            rows.append({**row, "error": "file not installed (pip install pydicom-data)"})
            continue
        # One decode: the HU feed the gate, the network (as decode_image would) and the
        # peak's HU; the slice is scored whatever the gate says, so both answers are shown.
        dicom = decode_dicom(path.read_bytes(), name, max_pixels=DEFAULT_MAX_PIXELS)
        scope = dicom_scope(dicom)
        row["gate"] = "head" if scope is None or scope.head else "not_head"
        hu = dicom.hu
        channels = hu_to_channels(hu)
        frame = model_frame(channels, loaded.framing)
        pixels = resize_to_model(channels, loaded.input_size, frame)
        probs, maps = cam(pixels[None])
        point = peak(maps[0], hu.shape[:2], frame)
        row["probability"] = round(float(probs[0]), 4)
        row["threshold"] = round(loaded.threshold, 4)
        row["flagged"] = bool(probs[0] >= loaded.threshold)
        if point is not None:
            r, c = point
            patch = hu[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
            row["peak"] = [int(r), int(c)]
            row["peak_hu"] = round(float(np.median(patch)), 1)
        on_tissue = point is not None and TISSUE_HU[0] <= row["peak_hu"] <= TISSUE_HU[1]
        if head:
            ok = row["gate"] == "head" and on_tissue
            row["check"] = "scored; peak on tissue 0..100 HU"
        elif head is None:
            ok = row["gate"] == "not_head" or on_tissue
            row["check"] = "rejected as not_head, or peak on tissue"
        else:
            ok = row["gate"] == "not_head" or not row["flagged"]
            row["check"] = "rejected as not_head or below the threshold"
        row["passed"] = bool(ok)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hybrid_model.realct",
        description="Sanity checks of a model on the real CT slices of pydicom and pydicom-data "
        "(labels unknown: gate, probability and where Grad-CAM points).",
    )
    parser.add_argument("--model", default=None, help="model .keras (default: the demo model)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = check(args.model)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="real CT sanity checks (labels unknown)")
        for col in ("file", "shows", "gate", "p", "flagged", "peak HU", "check", "ok"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["file"],
                r["shows"],
                r.get("gate", "-"),
                f"{r['probability']:.4f}" if "probability" in r else r.get("error", "-"),
                str(r.get("flagged", "-")),
                str(r.get("peak_hu", "-")),
                r.get("check", "-"),
                "yes" if r.get("passed") else "NO",
            )
        Console().print(table)
    return 0 if all(r.get("passed") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
