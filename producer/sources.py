"""Where the keys to scan come from: a streamed object-store listing, or a manifest CSV."""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hemoscan.errors import HemoscanError
from hemoscan.storage import ObjectStore


class ManifestError(HemoscanError):
    """The manifest CSV cannot be read."""


@dataclass(frozen=True, slots=True)
class SourceItem:
    key: str
    size: int | None = None
    etag: str | None = None
    true_label: int | None = None


def iter_listing(store: ObjectStore, pattern: str | None = None) -> Iterator[SourceItem]:
    """Every object under the store's prefix (streamed page by page), filtered by a glob."""
    for info in store.list():
        if pattern and not fnmatch.fnmatchcase(info.key, pattern):
            continue
        yield SourceItem(info.key, info.size, info.etag)


_HEADER_KEYS = {"key", "object_key", "id", "path", "file", "filename", "image"}
_LABELS = {"0": 0, "1": 1, "false": 0, "true": 1, "no": 0, "yes": 1, "": None}


def iter_manifest(path: str | Path, pattern: str | None = None) -> Iterator[SourceItem]:
    """Keys from a CSV: one object key per line, optionally a label column (0/1).

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
            yield SourceItem(key, true_label=label)
