"""Where the keys to scan come from: a streamed object-store listing, or a manifest CSV."""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hemoscan.dicomweb import DicomwebStore, Filters
from hemoscan.errors import HemoscanError
from hemoscan.storage import ObjectStore
from hybrid_model.layouts import LayoutError, Table, read_table


class ManifestError(HemoscanError):
    """The manifest CSV cannot be read."""


@dataclass(frozen=True, slots=True)
class SourceItem:
    key: str
    size: int | None = None
    etag: str | None = None
    true_label: int | None = None
    series: str | None = None  # a manifest's series column (a folder of PNGs needs none)
    locator: str | None = None  # a DICOMweb instance's sealed UIDs (hemoscan.dicomweb)


def iter_labelled_listing(
    store: ObjectStore, table: Table, pattern: str | None = None
) -> Iterator[SourceItem]:
    """The listed objects a public layout's label table names (RSNA ``stage_2_train.csv``,
    CQ500 ``reads.csv``, Kaggle ``labels.csv``: ``hybrid_model.layouts``), with their labels;
    keys the table does not name are not scanned, as with a plain manifest."""
    for item in iter_listing(store, pattern):
        label = table.label(item.key)
        if label is not None:
            yield SourceItem(item.key, item.size, item.etag, label)


def read_layout_table(path: str | Path) -> Table | None:
    """The label table of a public layout in the manifest ``path``, None for a plain manifest
    of keys; ManifestError when the file cannot be read or its columns are wrong."""
    try:
        return read_table(path)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from exc
    except LayoutError as exc:
        raise ManifestError(f"manifest {path}: {exc}") from exc


def iter_dicomweb(store: DicomwebStore, filters: Filters, secret: bytes) -> Iterator[SourceItem]:
    """The instances a DICOMweb source's QIDO-RS filters select, with their sealed locators
    (no size or ETag: an instance's content never changes under its UID)."""
    for found in store.instances(filters, secret):
        yield SourceItem(found.key, locator=found.locator)


def iter_listing(store: ObjectStore, pattern: str | None = None) -> Iterator[SourceItem]:
    """Every object under the store's prefix (streamed page by page), filtered by a glob."""
    for info in store.list():
        if pattern and not fnmatch.fnmatchcase(info.key, pattern):
            continue
        yield SourceItem(info.key, info.size, info.etag)


_HEADER_KEYS = {"key", "object_key", "id", "path", "file", "filename", "image"}
_LABELS = {"0": 0, "1": 1, "false": 0, "true": 1, "no": 0, "yes": 1, "": None}


def iter_manifest(path: str | Path, pattern: str | None = None) -> Iterator[SourceItem]:
    """Keys from a CSV: one object key per line, optionally a label column (0/1) and a series
    column (any text naming the series the object belongs to; empty: none).

    A first row whose first cell is a column name (key, id, path, ...) is a header.
    Keys are relative to the scan's SOURCE.
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from exc
    with handle:
        for lineno, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            key = row[0].strip()
            if lineno == 1 and key.lower() in _HEADER_KEYS:
                continue
            label = None
            if len(row) > 1:
                text = row[1].strip().lower()
                if text not in _LABELS:
                    raise ManifestError(
                        f"{path}:{lineno}: label must be 0 or 1 (or empty), not {row[1]!r}"
                    )
                label = _LABELS[text]
            if pattern and not fnmatch.fnmatchcase(key, pattern):
                continue
            series = row[2].strip() if len(row) > 2 and row[2].strip() else None
            yield SourceItem(key, true_label=label, series=series)
