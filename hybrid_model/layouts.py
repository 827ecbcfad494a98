"""The labelled-data layouts users bring, read as (file, label, group) entries.

* ``rsna``: the RSNA Intracranial Hemorrhage Detection release (2019): ``stage_2_train.csv``
  (or ``stage_1_train.csv``) with columns ``ID,Label``, ``ID`` = ``ID_<SOP id>_<subtype>``;
  the ``any`` subtype is the label; the file has duplicate rows (read once; a conflicting
  duplicate counts as positive). DICOMs are ``ID_<SOP id>.dcm`` anywhere below the folder.
  Grouped by patient (PatientID from each header, read without the pixels).
* ``cq500``: the CQ500 release: ``reads.csv`` with ``name`` (``CQ500-CT-1``) and per-reader
  columns ``R1:ICH``, ``R2:ICH``, ``R3:ICH``; a study is positive by a 2-of-3 majority and every
  slice of its folder (``CQ500CT1 CQ500CT1/...``) carries the study's label. Grouped by study.
* ``labels``: ``labels.csv`` with ``id`` and ``hemorrhage`` (the Kaggle "Head CT - hemorrhage"
  set spells it `` hemorrhage``, with a leading space, and names its files ``head_ct/000.png``
  for id ``0``; hemoscan's phantoms use the same file with series subfolders). Grouped by the
  folder an image lies in (a phantom series); one folder (``head_ct/``) is one group, and a
  split needs five, so such a set is split by image.
* ``classes``: one subfolder per class (``0/`` ``1/`` or ``normal/`` ``hemorrhage/``); no groups.

Training splits by group (``train.split``): neighbouring slices of a series, and the series of
one patient, are near copies, so a split by slice would validate on the training data. Groups
are one-way digests, used within the run and never stored.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
CLASS_DIRS = {"0": 0, "normal": 0, "1": 1, "hemorrhage": 1}
RSNA_FILES = ("stage_2_train.csv", "stage_1_train.csv")
RSNA_ID = re.compile(r"^(ID_[0-9A-Za-z]+)_(any|epidural|intraparenchymal|intraventricular|"
                     r"subarachnoid|subdural)$")  # fmt: skip
CQ500_READERS = ("R1:ICH", "R2:ICH", "R3:ICH")


class LayoutError(ValueError):
    """A data folder's layout is recognised but unusable (no labelled file found, bad table)."""


@dataclass(frozen=True)
class Entry:
    path: Path
    label: int
    group: str = ""  # patient / study / series digest: a split keeps a group on one side


def digest(kind: str, value: str) -> str:
    """``kind:`` and 16 hex digits of the value's SHA-256: a group key that names no patient."""
    return f"{kind}:{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def _images(root: Path) -> Iterable[Path]:
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and "masks" not in p.relative_to(root).parts:
            yield p


def _table_file(root: Path) -> tuple[Path, type[Table]] | None:
    for name, kind in TABLE_FILES:
        if (root / name).is_file():
            return root / name, kind
    return None


def detect(root: Path) -> str:
    """The layout name of ``root`` (see the module docstring), or LayoutError."""
    found = _table_file(root)
    if found is not None:
        return found[1].layout
    if any((root / name).is_dir() for name in CLASS_DIRS):
        return "classes"
    raise LayoutError(
        f"{root} holds no known layout: labels.csv, class subfolders (0/ 1/ or normal/ "
        f"hemorrhage/), an RSNA {RSNA_FILES[0]} or a CQ500 reads.csv"
    )


def entries(root: str | Path) -> tuple[str, list[Entry]]:
    """(layout name, entries) of a data folder; LayoutError when none is usable."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data folder not found: {root}")
    layout = detect(root)
    found = _table_file(root)
    listed = _classes(root) if found is None else _from_table(root, found[1](found[0]))
    if not listed:
        raise LayoutError(f"{root} ({layout} layout): no labelled image file found")
    log.info("%s layout: %d labelled images in %d groups", layout, len(listed),
             len({e.group for e in listed}))  # fmt: skip
    return layout, listed


def _rows(path: Path, required: set[str]) -> Iterator[dict[str, str]]:
    """The rows of a label table, names and values stripped (Kaggle's `` hemorrhage``);
    LayoutError naming the columns it lacks."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = required - {(n or "").strip() for n in reader.fieldnames or ()}
        if missing:
            raise LayoutError(f"{path.name}: missing the columns {', '.join(sorted(missing))}")
        for row in reader:
            yield {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}


class Table(ABC):
    """A label table of one layout, matched against keys relative to the data root
    (``a/b/ID_12.dcm``): the same rules for a folder (``entries``) and for an object-store
    listing (``hemoscan scan --manifest``)."""

    layout = ""

    def __init__(self, path: Path) -> None:
        """Read the table at ``path``; LayoutError when its columns are wrong."""
        self.labels: dict[str, int] = {}

    @abstractmethod
    def label(self, key: str) -> int | None:
        """The label of the image at ``key``, None when the table does not name it."""

    def group(self, key: str, path: Path | None = None) -> str:
        """The split group of the image at ``key`` ("" for none); ``path``: the local file."""
        return ""


def _stem(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


class LabelsTable(Table):
    """``labels.csv`` (``id`` and ``hemorrhage``, either spelling of the column)."""

    layout = "labels"

    def __init__(self, path: Path):
        self.labels = {
            r["id"]: int(r["hemorrhage"])
            for r in _rows(path, {"id", "hemorrhage"})
            if r["hemorrhage"] in ("0", "1")
        }

    def label(self, key: str) -> int | None:
        stem = _stem(key)
        found = self.labels.get(stem)
        if found is None and stem.isdigit():  # the Kaggle set: id 0 is head_ct/000.png
            found = self.labels.get(str(int(stem)))
        return found

    def group(self, key: str, path: Path | None = None) -> str:
        folder = key.rsplit("/", 1)[0] if "/" in key else ""
        return digest("folder", folder) if folder else ""


class RsnaTable(Table):
    """``stage_2_train.csv``: ``ID_<SOP id>_any`` rows; duplicates read once."""

    layout = "rsna"

    def __init__(self, path: Path):
        self.labels: dict[str, int] = {}
        for row in _rows(path, {"ID", "Label"}):
            match = RSNA_ID.match(row["ID"])
            if match and match.group(2) == "any" and row["Label"] in ("0", "1"):
                sop = match.group(1)  # a conflicting duplicate counts as positive
                self.labels[sop] = max(self.labels.get(sop, 0), int(row["Label"]))

    def label(self, key: str) -> int | None:
        return self.labels.get(_stem(key))

    def group(self, key: str, path: Path | None = None) -> str:
        return _patient_group(path) if path is not None else ""


class Cq500Table(Table):
    """``reads.csv``: a study's label by the 2-of-3 majority of its readers, for every slice
    in its folder (the first path component, ``CQ500CT1 CQ500CT1``)."""

    layout = "cq500"

    def __init__(self, path: Path):
        self.labels: dict[str, int] = {}
        for row in _rows(path, {"name", *CQ500_READERS}):
            votes = [row[r] for r in CQ500_READERS]
            if all(v in ("0", "1") for v in votes):
                self.labels[_normalised(row["name"])] = int(sum(map(int, votes)) >= 2)

    @staticmethod
    def _study(key: str) -> str:
        first = key.split("/", 1)[0].split()
        return _normalised(first[0]) if first and "/" in key else ""

    def label(self, key: str) -> int | None:
        return self.labels.get(self._study(key))

    def group(self, key: str, path: Path | None = None) -> str:
        return digest("study", self._study(key))


def read_table(path: str | Path) -> Table | None:
    """The label table of a layout in ``path`` (by its name and columns), None when it is
    none of them (a plain manifest of keys)."""
    path = Path(path)
    with open(path, newline="") as fh:
        header = [c.strip() for c in next(csv.reader(fh), [])]
    if {"ID", "Label"} <= set(header):
        return RsnaTable(path)
    if "name" in header and any(c in header for c in CQ500_READERS):
        return Cq500Table(path)
    if "id" in header and "hemorrhage" in header:
        return LabelsTable(path)
    return None


TABLE_FILES: tuple[tuple[str, type[Table]], ...] = (
    *((name, RsnaTable) for name in RSNA_FILES),
    ("reads.csv", Cq500Table),
    ("labels.csv", LabelsTable),
)


def _from_table(root: Path, table: Table) -> list[Entry]:
    out = []
    for p in _images(root):
        key = p.relative_to(root).as_posix()
        label = table.label(key)
        if label is not None:
            out.append(Entry(p, label, table.group(key, p)))
    return out


def _classes(root: Path) -> list[Entry]:
    return [
        Entry(p, label)
        for name, label in CLASS_DIRS.items()
        if (root / name).is_dir()
        for p in sorted((root / name).iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]


def _patient_group(path: Path) -> str:
    """The patient of a DICOM file as a digest (StudyInstanceUID when PatientID is missing,
    the file itself when neither can be read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["PatientID", "StudyInstanceUID"])  # fmt: skip
        patient = str(ds.get("PatientID", "") or "")
        study = str(ds.get("StudyInstanceUID", "") or "")
    except Exception:  # an unreadable header: the decoder reports it when the file is read
        patient = study = ""
    if patient:
        return digest("patient", patient)
    return digest("study", study) if study else digest("file", str(path))


def _normalised(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


__all__ = ["CLASS_DIRS", "IMAGE_SUFFIXES", "Entry", "LayoutError", "Table", "detect", "digest",
           "entries", "read_table"]  # fmt: skip
