"""Small fixtures in the public data layouts (RSNA 2019, CQ500, Kaggle "Head CT - hemorrhage"),
built from CT phantom slices so the images decode and the labels are known."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pydicom

from hybrid_model.synth.write import generate_series

SUBTYPES = ("any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")


def phantom_slices(out: Path, count: int, seed: int, fmt: str = "dcm") -> list[tuple[Path, int]]:
    """``count`` single phantom slices (64 x 64) with their labels."""
    generate_series(out, count, seed, fmt=fmt, size=64, single=True, workers=1)
    with open(out / "labels.csv", newline="") as fh:
        labels = {r["id"]: int(r["hemorrhage"]) for r in csv.DictReader(fh)}
    files = {
        p.stem: p
        for p in out.rglob("*")
        if p.suffix in (".dcm", ".png") and p.parent.name != "masks"
    }
    return [(files[k], labels[k]) for k in sorted(labels)]


def rsna(root: Path, slices: list[tuple[Path, int]], per_patient: int = 3) -> dict[str, str]:
    """``stage_2_train.csv`` (every subtype row, some rows twice) and ``ID_<sop>.dcm`` files in
    ``stage_2_train/``; ``per_patient`` consecutive slices share a PatientID. Returns the SOP id
    of each file -> its patient."""
    (root / "stage_2_train").mkdir(parents=True)
    patient_of, rows = {}, []
    for i, (path, label) in enumerate(slices):
        sop = f"ID_{0xA0000 + i * 7919:x}"
        patient = f"ID_PAT{i // per_patient:04d}"
        ds = pydicom.dcmread(path)
        ds.PatientID = patient
        ds.save_as(root / "stage_2_train" / f"{sop}.dcm")
        patient_of[sop] = patient
        for subtype in SUBTYPES:
            rows.append((f"{sop}_{subtype}", label if subtype in ("any", "subdural") else 0))
    rows += rows[:12]  # the release has duplicate rows
    with open(root / "stage_2_train.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ID", "Label"])
        writer.writerows(rows)
    return patient_of


def cq500(root: Path, slices: list[tuple[Path, int]], per_study: int = 2) -> dict[str, int]:
    """``reads.csv`` with three readers (a 2-of-3 majority gives the study's label: positive when
    a slice of it is) and study folders ``CQ500CT<k> CQ500CT<k>/Unknown Study/CT 5mm/``.
    Returns each study name -> its label."""
    studies: dict[str, int] = {}
    for i, (path, label) in enumerate(slices):
        k = i // per_study
        name = f"CQ500-CT-{k}"
        folder = root / f"CQ500CT{k} CQ500CT{k}" / "Unknown Study" / "CT 5mm"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"CT{i % per_study:06d}.dcm")
        studies[name] = max(studies.get(name, 0), label)
    with open(root / "reads.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "Category", "R1:ICH", "R2:ICH", "R3:ICH"])
        for name, label in studies.items():  # one reader disagrees with the other two
            writer.writerow([name, "B1", label, 1 - label, label])
    return studies


def kaggle(root: Path, slices: list[tuple[Path, int]]) -> None:
    """``head_ct/NNN.png`` and ``labels.csv`` with the columns ``id`` and `` hemorrhage``."""
    (root / "head_ct").mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as fh:
        fh.write("id, hemorrhage\n")
        for i, (path, label) in enumerate(slices):
            shutil.copy(path, root / "head_ct" / f"{i:03d}.png")
            fh.write(f"{i},{label}\n")
